// The `evoq` binary: every subcommand registers itself from its own file in this directory.
#include "evoq/core/cli.h"

int main(int argc, char** argv) { return evoq::cli::main(argc, argv); }
