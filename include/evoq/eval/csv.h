#pragma once
// Minimal RFC-4180 CSV reading for label files and manifests: quoted fields may contain commas, doubled
// quotes and newlines; CRLF line ends are accepted; a UTF-8 BOM is skipped.
#include <cstddef>
#include <initializer_list>
#include <string>
#include <vector>

namespace evoq::eval {

struct CsvTable {
  std::vector<std::string> header;
  std::vector<std::vector<std::string>> rows;
  std::vector<std::size_t> line_numbers;  // 1-based line in the file where each row starts

  // Index of the first header column named one of `names` (case-insensitive); -1 when none.
  int column(std::initializer_list<const char*> names) const;
};

// Parses text (first record is the header). Blank lines are skipped. `source` names the file in errors.
CsvTable parse_csv(const std::string& text, const std::string& source);
CsvTable read_csv(const std::string& path);

// Quotes a field for writing when it contains a comma, quote or newline.
std::string csv_field(const std::string& value);

// ASCII lower case (dataset names, aliases and root keys are matched case-insensitively).
std::string to_lower(std::string s);

}  // namespace evoq::eval
