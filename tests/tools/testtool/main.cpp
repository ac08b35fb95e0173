// `evoq-testtool`: the test drivers that are not part of the product (fake voters, the optimizer and
// GRPO-gradient drivers, the logits processor), with the same command framework as `evoq`.
#include "evoq/cli/cli.h"

int main(int argc, char** argv) { return evoq::cli::main(argc, argv); }
