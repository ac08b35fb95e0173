#include "evoq/core/log.h"

#include <chrono>
#include <cstdio>
#include <ctime>
#include <mutex>

namespace evoq::log {
namespace {
Level g_level = Level::info;
int g_rank = -1;
bool g_all_ranks = false;
std::mutex g_mutex;
}  // namespace

void set_level(Level l) { g_level = l; }
Level level() { return g_level; }

Level parse_level(const std::string& name) {
  if (name == "debug") return Level::debug;
  if (name == "info") return Level::info;
  if (name == "warn") return Level::warn;
  if (name == "error") return Level::error;
  if (name == "quiet") return Level::quiet;
  throw UsageError("--log-level: expected debug|info|warn|error|quiet, got '" + name + "'");
}

void set_rank(int rank, bool all_ranks) {
  g_rank = rank;
  g_all_ranks = all_ranks;
}

void write(Level l, const std::string& message) {
  if (l < g_level) return;
  if (g_rank > 0 && !g_all_ranks && l < Level::warn) return;
  static const char* names[] = {"debug", "info", "warn", "error", "quiet"};
  auto now = std::chrono::system_clock::to_time_t(std::chrono::system_clock::now());
  std::tm tm{};
  localtime_r(&now, &tm);
  char stamp[16];
  std::strftime(stamp, sizeof stamp, "%H:%M:%S", &tm);
  std::lock_guard<std::mutex> lock(g_mutex);
  if (g_rank >= 0)
    std::fprintf(stderr, "[%s r%d %s] %s\n", stamp, g_rank, names[int(l)], message.c_str());
  else
    std::fprintf(stderr, "[%s %s] %s\n", stamp, names[int(l)], message.c_str());
  std::fflush(stderr);
}

}  // namespace evoq::log
