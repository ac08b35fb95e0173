#pragma once
// evoq::Error: the one exception type user-facing failures throw. Its message is a single line that
// names the bad thing (file, option, tensor) so `evoq` can print it and exit non-zero without a trace.
#include <sstream>
#include <stdexcept>
#include <string>

namespace evoq {

class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& what) : std::runtime_error(what) {}
};

// A bad command-line option or value: reported with a hint to --help, exit status 2.
class UsageError : public Error {
 public:
  explicit UsageError(const std::string& what) : Error(what) {}
};

namespace detail {
template <typename... Args>
std::string concat(Args&&... args) {
  std::ostringstream os;
  (os << ... << args);
  return os.str();
}
}  // namespace detail

template <typename... Args>
[[noreturn]] void fail(Args&&... args) {
  throw Error(detail::concat(std::forward<Args>(args)...));
}

}  // namespace evoq

// EVOQ_CHECK(cond, "message parts", ...): throws evoq::Error with the parts joined when cond is false.
#define EVOQ_CHECK(cond, ...)                   \
  do {                                          \
    if (!(cond)) ::evoq::fail(__VA_ARGS__);     \
  } while (0)
