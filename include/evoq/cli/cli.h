#pragma once
// Subcommand framework for the `evoq` binary.
//
// Each subcommand lives in its own file under src/apps/ and registers itself with
// EVOQ_COMMAND(name, summary, add_options, run). Options are Boost.Program_options; every command
// accepts --config FILE (an INI-style file whose keys are the long option names, optionally in a
// [section] named after the command) and command-line flags override the file. `--help` prints
// each option with the value it would take now, so `--config F --help` shows what F sets.
#include <boost/program_options.hpp>
#include <functional>
#include <string>
#include <vector>

namespace evoq::cli {

namespace po = boost::program_options;

struct Command {
  std::string name;
  std::string summary;
  // Adds the command's options (the common ones are added by the framework).
  std::function<void(po::options_description&, po::positional_options_description&)> add_options;
  // Runs the command; returns the process exit status.
  std::function<int(const po::variables_map&)> run;
  std::string usage;  // e.g. "evoq score --model DIR IMAGE..." (optional)
  bool hidden = false;  // internal/test entry points: runnable, not listed by `evoq --help`
};

std::vector<Command>& registry();

struct Registrar {
  explicit Registrar(Command command);
};

// Parses argv (argv[0] is the subcommand name) and the optional --config file into vm.
// Throws UsageError on bad options. Returns false when --help was printed instead.
bool parse(const Command& command, int argc, const char* const* argv, po::variables_map& vm,
           std::ostream& help_out);

// Stores the options of config file `path` that apply to section `section_name`: keys before any
// [section] when `options` has them, and every key of [section_name] (an unknown one is a UsageError).
// Values already in vm win (the command line beats the file).
void store_config_file(const std::string& section_name, const po::options_description& options,
                       const std::string& path, po::variables_map& vm);

// Renders the help text with current values (defaults, config file, command line).
std::string help_text(const Command& command, const po::options_description& options,
                      const po::variables_map& vm);

// Entry point of the binary: dispatch, uniform error handling. Returns the exit status.
int main(int argc, char** argv);

// Convenience accessors that raise UsageError naming the option.
std::string require_string(const po::variables_map& vm, const std::string& name);

}  // namespace evoq::cli

#define EVOQ_CLI_CONCAT2(a, b) a##b
#define EVOQ_CLI_CONCAT(a, b) EVOQ_CLI_CONCAT2(a, b)
#define EVOQ_COMMAND(...) \
  static ::evoq::cli::Registrar EVOQ_CLI_CONCAT(evoq_command_registrar_, __LINE__)(::evoq::cli::Command{__VA_ARGS__})
