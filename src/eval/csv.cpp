#include "evoq/eval/csv.h"

#include <algorithm>
#include <cctype>
#include <fstream>
#include <sstream>

#include "evoq/core/error.h"

namespace evoq::eval {
namespace {

bool iequals(const std::string& a, const char* b) {
  const std::string bs(b);
  return a.size() == bs.size() && std::equal(a.begin(), a.end(), bs.begin(), [](char x, char y) {
           return std::tolower(static_cast<unsigned char>(x)) == std::tolower(static_cast<unsigned char>(y));
         });
}

}  // namespace

int CsvTable::column(std::initializer_list<const char*> names) const {
  for (const char* name : names)
    for (std::size_t i = 0; i < header.size(); ++i)
      if (iequals(header[i], name)) return static_cast<int>(i);
  return -1;
}

CsvTable parse_csv(const std::string& text, const std::string& source) {
  CsvTable table;
  std::vector<std::string> record;
  std::string field;
  bool in_quotes = false, field_started = false;
  std::size_t line = 1, record_line = 1;
  std::size_t i = text.compare(0, 3, "\xEF\xBB\xBF") == 0 ? 3 : 0;

  auto end_record = [&] {
    record.push_back(field);
    field.clear();
    const bool blank = record.size() == 1 && record[0].empty();
    if (!blank) {
      if (table.header.empty()) {
        table.header = std::move(record);
      } else {
        table.rows.push_back(std::move(record));
        table.line_numbers.push_back(record_line);
      }
    }
    record.clear();
    field_started = false;
  };

  for (; i < text.size(); ++i) {
    const char c = text[i];
    if (in_quotes) {
      if (c == '"') {
        if (i + 1 < text.size() && text[i + 1] == '"') {
          field += '"';
          ++i;
        } else {
          in_quotes = false;
        }
      } else {
        if (c == '\n') ++line;
        field += c;
      }
      continue;
    }
    if (c == '"' && field.empty()) {
      in_quotes = true;
      field_started = true;
    } else if (c == ',') {
      record.push_back(field);
      field.clear();
      field_started = true;
    } else if (c == '\r') {
      // CR of a CRLF: ignored
    } else if (c == '\n') {
      end_record();
      ++line;
      record_line = line;
    } else {
      field += c;
      field_started = true;
    }
  }
  EVOQ_CHECK(!in_quotes, source, ": unterminated quoted field starting on line ", record_line);
  if (field_started || !record.empty() || !field.empty()) end_record();
  EVOQ_CHECK(!table.header.empty(), source, ": empty CSV file (no header line)");
  return table;
}

CsvTable read_csv(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  EVOQ_CHECK(in, "cannot open ", path);
  std::ostringstream ss;
  ss << in.rdbuf();
  return parse_csv(ss.str(), path);
}

std::string csv_field(const std::string& value) {
  if (value.find_first_of(",\"\n\r") == std::string::npos) return value;
  std::string out = "\"";
  for (char c : value) {
    if (c == '"') out += '"';
    out += c;
  }
  return out + "\"";
}

std::string to_lower(std::string s) {
  for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

}  // namespace evoq::eval
