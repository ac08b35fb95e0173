#pragma once
// Minimal logging: one line per message on stderr, prefixed with time and (when set) the MPI rank.
// Only rank 0 prints info by default so multi-rank runs stay readable.
#include <string>

#include "evoq/core/error.h"

namespace evoq::log {

enum class Level { debug = 0, info = 1, warn = 2, error = 3, quiet = 4 };

void set_level(Level level);
Level level();
Level parse_level(const std::string& name);  // debug|info|warn|error|quiet
// Rank used as prefix; messages below warn from ranks other than 0 are dropped unless all_ranks.
void set_rank(int rank, bool all_ranks = false);

void write(Level level, const std::string& message);

template <typename... Args>
void debug(Args&&... args) { if (level() <= Level::debug) write(Level::debug, detail::concat(args...)); }
template <typename... Args>
void info(Args&&... args) { if (level() <= Level::info) write(Level::info, detail::concat(args...)); }
template <typename... Args>
void warn(Args&&... args) { if (level() <= Level::warn) write(Level::warn, detail::concat(args...)); }
template <typename... Args>
void error(Args&&... args) { write(Level::error, detail::concat(args...)); }

}  // namespace evoq::log
