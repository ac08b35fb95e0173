#include "evoq/cli/cli.h"

#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdint>
#include <fstream>
#include <iomanip>
#include <iostream>
#include <sstream>

#include "evoq/core/error.h"
#include "evoq/core/log.h"

namespace evoq::cli {

std::vector<Command>& registry() {
  static std::vector<Command> commands;
  return commands;
}

Registrar::Registrar(Command command) { registry().push_back(std::move(command)); }

namespace {

void add_common_options(po::options_description& common) {
  common.add_options()
      ("help,h", "print this help (with the values the options currently take) and exit")
      ("config", po::value<std::string>(), "read options from this config file; command-line flags override it")
      ("log-level", po::value<std::string>()->default_value("info"), "debug | info | warn | error | quiet");
}

// Renders a stored option value as text for --help.
std::string value_text(const po::variable_value& v) {
  const boost::any& a = v.value();
  if (a.empty()) return "";
  if (auto p = boost::any_cast<std::string>(&a)) return *p;
  if (auto p = boost::any_cast<int>(&a)) return std::to_string(*p);
  if (auto p = boost::any_cast<long>(&a)) return std::to_string(*p);
  if (auto p = boost::any_cast<long long>(&a)) return std::to_string(*p);
  if (auto p = boost::any_cast<unsigned>(&a)) return std::to_string(*p);
  if (auto p = boost::any_cast<unsigned long>(&a)) return std::to_string(*p);
  if (auto p = boost::any_cast<bool>(&a)) return *p ? "true" : "false";
  if (auto p = boost::any_cast<double>(&a)) { std::ostringstream os; os << *p; return os.str(); }
  if (auto p = boost::any_cast<float>(&a)) { std::ostringstream os; os << *p; return os.str(); }
  if (auto p = boost::any_cast<std::vector<std::string>>(&a)) {
    std::string s;
    for (const auto& x : *p) s += (s.empty() ? "" : " ") + x;
    return s;
  }
  return "(set)";
}

}  // namespace

// Keys before any [section] apply to every command that has them (others ignore them); keys in a
// [command] section apply to that command only and must be its options.
void store_config_file(const std::string& section_name, const po::options_description& options,
                       const std::string& path, po::variables_map& vm) {
  std::ifstream in(path);
  if (!in) throw UsageError("--config: cannot open '" + path + "'");
  std::stringstream shared, own;
  std::string line, section;
  while (std::getline(in, line)) {
    auto first = line.find_first_not_of(" \t");
    if (first != std::string::npos && line[first] == '[') {
      auto close = line.find(']', first);
      if (close == std::string::npos) throw UsageError("--config " + path + ": malformed section line '" + line + "'");
      section = line.substr(first + 1, close - first - 1);
      continue;
    }
    if (section.empty()) shared << line << "\n";
    else if (section == section_name) own << line << "\n";
  }
  try {
    po::store(po::parse_config_file(own, options, /*allow_unregistered=*/false), vm);
    auto parsed = po::parse_config_file(shared, options, /*allow_unregistered=*/true);
    for (const auto& opt : parsed.options) {
      if (!opt.unregistered) continue;
      // A shared key must belong to at least one command, or it is a typo.
      bool known = false;
      for (const auto& other : registry()) {
        po::options_description o;
        po::positional_options_description p;
        if (other.add_options) other.add_options(o, p);
        if (o.find_nothrow(opt.string_key, false)) known = true;
      }
      if (!known) throw UsageError("--config " + path + ": unknown option '" + opt.string_key + "'");
    }
    po::store(parsed, vm);
  } catch (const po::error& e) {
    throw UsageError("--config " + path + ": " + e.what());
  }
}

std::string help_text(const Command& command, const po::options_description& options,
                      const po::variables_map& vm) {
  std::ostringstream os;
  os << "evoq " << command.name << " — " << command.summary << "\n\n";
  os << "usage: " << (command.usage.empty() ? "evoq " + command.name + " [options]" : command.usage) << "\n\n";
  os << "options (current value in brackets: default, config file or command line):\n";
  for (const auto& opt : options.options()) {
    std::string flag = opt->format_name();
    std::string arg = opt->format_parameter();
    std::string left = "  " + flag + (arg.empty() ? "" : " " + arg);
    os << std::left << std::setw(34) << left;
    if (left.size() >= 34) os << "\n" << std::string(34, ' ');
    os << opt->description();
    auto it = vm.find(opt->long_name());
    if (it != vm.end() && !it->second.empty()) {
      std::string v = value_text(it->second);
      if (!v.empty()) os << " [" << v << (it->second.defaulted() ? "" : " *") << "]";
    }
    os << "\n";
  }
  os << "\n  (* = set by the config file or the command line)\n";
  return os.str();
}

bool parse(const Command& command, int argc, const char* const* argv, po::variables_map& vm,
           std::ostream& help_out) {
  po::options_description options("options");
  po::positional_options_description positional;
  if (command.add_options) command.add_options(options, positional);
  add_common_options(options);
  try {
    auto parsed = po::command_line_parser(argc, argv).options(options).positional(positional).run();
    po::store(parsed, vm);  // first stored wins: the command line beats the config file
    if (vm.count("config")) store_config_file(command.name, options, vm["config"].as<std::string>(), vm);
    if (vm.count("help")) {
      help_out << help_text(command, options, vm);
      return false;
    }
    po::notify(vm);
  } catch (const po::error& e) {
    throw UsageError(e.what());
  }
  log::set_level(log::parse_level(vm["log-level"].as<std::string>()));
  return true;
}

std::string require_string(const po::variables_map& vm, const std::string& name) {
  if (!vm.count(name) || vm[name].as<std::string>().empty())
    throw UsageError("the option '--" + name + "' is required");
  return vm[name].as<std::string>();
}

namespace {

// One write(2) per line: under mpirun every rank's stderr goes to one pipe, and a line written in pieces
// interleaves with another rank's (writes up to PIPE_BUF bytes are atomic).
void write_error_line(std::string line) {
  line += '\n';
  std::fflush(stderr);
  const char* p = line.data();
  std::size_t left = line.size();
  while (left > 0) {
    const ssize_t n = ::write(2, p, left);
    if (n <= 0) break;
    p += n;
    left -= std::size_t(n);
  }
}

void print_overview(std::ostream& os) {
  os << "evoq — self-evolving image-quality assessment for Qwen2-VL / Qwen2.5-VL (EvoQuality)\n\n"
     << "usage: evoq <command> [options]      evoq <command> --help\n\ncommands:\n";
  auto commands = registry();
  std::sort(commands.begin(), commands.end(), [](auto& a, auto& b) { return a.name < b.name; });
  for (const auto& c : commands)
    if (!c.hidden) os << "  " << std::left << std::setw(20) << c.name << c.summary << "\n";
  os << "\nglobal: --version, --help. Every command takes --config FILE (flags override it).\n";
}

}  // namespace

// `evoq --config F --help`: the overview plus, per command, the values F sets (validated).
int print_config_overview(const std::string& path) {
  print_overview(std::cout);
  std::cout << "\nvalues from " << path << ":\n";
  auto commands = registry();
  std::sort(commands.begin(), commands.end(), [](auto& a, auto& b) { return a.name < b.name; });
  for (const auto& c : commands) {
    po::options_description options("options");
    po::positional_options_description positional;
    if (c.add_options) c.add_options(options, positional);
    add_common_options(options);
    po::variables_map vm;
    store_config_file(c.name, options, path, vm);
    std::string line;
    for (const auto& [key, value] : vm)
      if (!value.defaulted() && key != "config") line += " --" + key + "=" + value_text(value);
    if (!line.empty()) std::cout << "  " << std::left << std::setw(12) << c.name << line << "\n";
  }
  return 0;
}

int main(int argc, char** argv) {
  // A global `--config FILE` before the command applies to it as if given after it.
  std::vector<char*> args(argv, argv + argc);
  std::string global_config;
  if (args.size() >= 3 && std::string(args[1]) == "--config") {
    global_config = args[2];
    args.erase(args.begin() + 1, args.begin() + 3);
    if (args.size() < 2 || std::string(args[1]) == "--help" || std::string(args[1]) == "-h") {
      try {
        return print_config_overview(global_config);
      } catch (const Error& e) {
        std::cerr << "evoq: " << e.what() << "\n";
        return 2;
      }
    }
    args.insert(args.begin() + 2, {const_cast<char*>("--config"), const_cast<char*>(global_config.c_str())});
  }
  argc = int(args.size());
  argv = args.data();
  if (argc < 2 || std::string(argv[1]) == "--help" || std::string(argv[1]) == "-h" ||
      std::string(argv[1]) == "help") {
    print_overview(std::cout);
    return argc < 2 ? 2 : 0;
  }
  const std::string name = argv[1];
  if (name == "--version") {
#ifdef EVOQ_VERSION
    std::cout << "evoq " << EVOQ_VERSION;
#endif
#ifdef EVOQ_TORCH_VERSION
    std::cout << " (libtorch " << EVOQ_TORCH_VERSION << ")";
#endif
    std::cout << "\n";
    return 0;
  }
  const auto& commands = registry();
  auto it = std::find_if(commands.begin(), commands.end(), [&](const Command& c) { return c.name == name; });
  if (it == commands.end()) {
    std::cerr << "evoq: unknown command '" << name << "' (see 'evoq --help')\n";
    return 2;
  }
  try {
    po::variables_map vm;
    if (!parse(*it, argc - 1, argv + 1, vm, std::cout)) return 0;
    return it->run(vm);
  } catch (const UsageError& e) {
    write_error_line("evoq " + name + ": " + e.what() + " (see 'evoq " + name + " --help')");
    return 2;
  } catch (const Error& e) {
    write_error_line("evoq " + name + ": error: " + e.what());
    return 1;
  } catch (const std::exception& e) {
    write_error_line("evoq " + name + ": internal error: " + e.what());
    return 1;
  }
}

}  // namespace evoq::cli
