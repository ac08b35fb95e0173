// `evoq tokenize`: the model's tokenizer on stdin, for debugging prompts and for the oracle tests.
#include <iostream>
#include <iterator>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>

#include "evoq/cli/cli.h"
#include "evoq/core/error.h"
#include "evoq/text/chat_template.h"
#include "evoq/text/tokenizer.h"

namespace {

namespace po = boost::program_options;
using evoq::text::Tokenizer;

std::vector<int32_t> parse_ids(const std::string& text) {
  std::vector<int32_t> ids;
  std::istringstream in(text);
  std::string word;
  while (in >> word) {
    size_t used = 0;
    long long id = 0;
    try {
      id = std::stoll(word, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    if (used != word.size() || id < INT32_MIN || id > INT32_MAX)
      throw evoq::Error("tokenize --decode: '" + word + "' is not a token id");
    ids.push_back(static_cast<int32_t>(id));
  }
  return ids;
}

void print_ids(const std::vector<int32_t>& ids) {
  std::string line;
  for (size_t i = 0; i < ids.size(); ++i) {
    if (i) line += ' ';
    line += std::to_string(ids[i]);
  }
  line += '\n';
  std::cout << line;
}

int run(const po::variables_map& vm) {
  const Tokenizer tokenizer = Tokenizer::load(evoq::cli::require_string(vm, "model"));
  const bool decode = vm["decode"].as<bool>(), skip_special = vm["skip-special"].as<bool>();
  const bool chat = vm["chat"].as<bool>();
  if (chat && (decode || vm["jsonl"].as<bool>())) throw evoq::UsageError("--chat takes neither --decode nor --jsonl");
  if (!chat && vm.count("image-tokens")) throw evoq::UsageError("--image-tokens needs --chat");
  std::ios::sync_with_stdio(false);
  if (vm["jsonl"].as<bool>()) {
    std::string line;
    size_t number = 0;
    while (std::getline(std::cin, line)) {
      ++number;
      if (decode) {
        std::cout << nlohmann::json(tokenizer.decode(parse_ids(line), skip_special)).dump() << '\n';
        continue;
      }
      nlohmann::json text;
      try {
        text = nlohmann::json::parse(line);
      } catch (const nlohmann::json::exception&) {
      }
      if (!text.is_string()) throw evoq::Error("tokenize --jsonl: stdin line " + std::to_string(number) +
                                               " is not a JSON string");
      print_ids(tokenizer.encode(text.get<std::string>()));
    }
    return 0;
  }
  const std::string input{std::istreambuf_iterator<char>(std::cin), std::istreambuf_iterator<char>()};
  if (chat) {
    std::vector<int64_t> image_tokens;
    if (vm.count("image-tokens")) image_tokens = vm["image-tokens"].as<std::vector<int64_t>>();
    print_ids(evoq::text::chat_prompt_ids(tokenizer, image_tokens, input));
  } else if (decode)
    std::cout << tokenizer.decode(parse_ids(input), skip_special);
  else
    print_ids(tokenizer.encode(input));
  return 0;
}

}  // namespace

EVOQ_COMMAND(
    "tokenize", "print the token ids of UTF-8 text on stdin (or --decode ids back to text)",
    [](po::options_description& o, po::positional_options_description&) {
      o.add_options()("model", po::value<std::string>(), "model directory (tokenizer.json, or vocab.json + merges.txt)")(
          "decode", po::bool_switch()->default_value(false), "read space-separated ids, print their text")(
          "skip-special", po::bool_switch()->default_value(false), "with --decode: leave out special tokens")(
          "jsonl", po::bool_switch()->default_value(false),
          "one item per line: each stdin line is a JSON string (with --decode: a line of ids; prints a JSON "
          "string); prints one line per item")(
          "chat", po::bool_switch()->default_value(false),
          "print the ids of the Instruct chat prompt whose user turn is the images, then stdin's text")(
          "image-tokens", po::value<std::vector<int64_t>>()->multitoken(),
          "with --chat: <|image_pad|> count of each image (t*h*w/4 of its grid_thw), one value per image");
    },
    run, "evoq tokenize --model DIR [--decode | --chat --image-tokens N...] < input");
