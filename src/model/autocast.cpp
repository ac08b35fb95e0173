#include "evoq/model/autocast.h"

#include <ATen/autocast_mode.h>

#include "evoq/core/error.h"

namespace evoq::model {

Autocast parse_autocast(const std::string& value, const std::string& option) {
  if (value == "off") return Autocast::off;
  if (value == "bf16") return Autocast::bf16;
  throw UsageError(option + " must be 'off', 'bf16' or 'auto' (got '" + value + "')");
}

const char* autocast_name(Autocast mode) { return mode == Autocast::bf16 ? "bf16" : "off"; }

AutocastScope::AutocastScope(Autocast mode, torch::Device device) {
  if (mode == Autocast::off) return;
  active_ = true;
  type_ = device.type();
  was_enabled_ = at::autocast::is_autocast_enabled(type_);
  was_dtype_ = at::autocast::get_autocast_dtype(type_);
  at::autocast::set_autocast_enabled(type_, true);
  at::autocast::set_autocast_dtype(type_, at::kBFloat16);
  at::autocast::increment_nesting();
}

AutocastScope::~AutocastScope() {
  if (!active_) return;
  if (at::autocast::decrement_nesting() == 0) at::autocast::clear_cache();
  at::autocast::set_autocast_enabled(type_, was_enabled_);
  at::autocast::set_autocast_dtype(type_, was_dtype_);
}

}  // namespace evoq::model
