#include <gtest/gtest.h>

#include <cstdio>
#include <fstream>
#include <sstream>

#include "evoq/cli/cli.h"
#include "evoq/core/error.h"

namespace po = boost::program_options;
using evoq::cli::Command;

namespace {
Command make_command() {
  Command c;
  c.name = "demo";
  c.summary = "test command";
  c.add_options = [](po::options_description& o, po::positional_options_description& p) {
    o.add_options()("samples", po::value<int>()->default_value(8), "samples per pair")(
        "model", po::value<std::string>()->default_value("tiny"), "model dir")(
        "images", po::value<std::vector<std::string>>()->multitoken(), "images");
    p.add("images", -1);
  };
  return c;
}

std::string write_temp(const std::string& text) {
  char name[] = "/tmp/evoq_cfg_XXXXXX";
  int fd = mkstemp(name);
  close(fd);
  std::ofstream(name) << text;
  return name;
}

bool parse(const std::vector<std::string>& args, po::variables_map& vm, std::string* help = nullptr) {
  std::vector<const char*> argv;
  for (auto& a : args) argv.push_back(a.c_str());
  std::ostringstream out;
  bool ran = evoq::cli::parse(make_command(), int(argv.size()), argv.data(), vm, out);
  if (help) *help = out.str();
  return ran;
}
}  // namespace

TEST(Cli, DefaultsApply) {
  po::variables_map vm;
  ASSERT_TRUE(parse({"demo"}, vm));
  EXPECT_EQ(vm["samples"].as<int>(), 8);
}

TEST(Cli, ConfigFileSetsValuesAndCommandLineOverrides) {
  auto cfg = write_temp("# comment\nsamples = 32\n[other]\nmodel = ignored\n[demo]\nmodel = /m\n");
  po::variables_map vm;
  ASSERT_TRUE(parse({"demo", "--config", cfg}, vm));
  EXPECT_EQ(vm["samples"].as<int>(), 32);
  EXPECT_EQ(vm["model"].as<std::string>(), "/m");

  po::variables_map vm2;
  ASSERT_TRUE(parse({"demo", "--config", cfg, "--samples", "4", "a.png", "b.png"}, vm2));
  EXPECT_EQ(vm2["samples"].as<int>(), 4);
  EXPECT_EQ(vm2["images"].as<std::vector<std::string>>().size(), 2u);
  std::remove(cfg.c_str());
}

TEST(Cli, HelpShowsConfigValues) {
  auto cfg = write_temp("samples = 17\n");
  po::variables_map vm;
  std::string help;
  EXPECT_FALSE(parse({"demo", "--config", cfg, "--help"}, vm, &help));
  EXPECT_NE(help.find("--samples"), std::string::npos);
  EXPECT_NE(help.find("[17 *]"), std::string::npos) << help;
  EXPECT_NE(help.find("[tiny]"), std::string::npos) << help;
  std::remove(cfg.c_str());
}

TEST(Cli, BadInputIsAUsageErrorNamingTheOption) {
  po::variables_map vm1, vm2, vm3, vm4;
  EXPECT_THROW(parse({"demo", "--nope"}, vm1), evoq::UsageError);
  try {
    parse({"demo", "--samples", "many"}, vm2);
    FAIL();
  } catch (const evoq::UsageError& e) {
    EXPECT_NE(std::string(e.what()).find("samples"), std::string::npos) << e.what();
  }
  EXPECT_THROW(parse({"demo", "--config", "/nonexistent/x.cfg"}, vm3), evoq::UsageError);
  auto cfg = write_temp("unknown_key = 1\n");
  EXPECT_THROW(parse({"demo", "--config", cfg}, vm4), evoq::UsageError);
  std::remove(cfg.c_str());
}

TEST(Cli, UnknownKeyInOwnSectionIsAnError) {
  auto cfg = write_temp("[demo]\nsampels = 3\n");
  po::variables_map vm;
  EXPECT_THROW(parse({"demo", "--config", cfg}, vm), evoq::UsageError);
  std::remove(cfg.c_str());
}
