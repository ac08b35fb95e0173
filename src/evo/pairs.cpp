#include "evoq/evo/pairs.h"

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <unordered_map>
#include <unordered_set>

#include "evoq/core/error.h"
#include "evoq/io/h5.h"

namespace evoq::evo {

namespace h5 = io::h5;

namespace {

std::uint64_t splitmix(std::uint64_t z) {
  z += 0x9E3779B97F4A7C15ULL;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
  return z ^ (z >> 31);
}

// Deterministic generator independent of the standard library's distributions.
class Rng {
 public:
  explicit Rng(std::uint64_t seed) : state_(seed) {}
  std::uint64_t next() { return splitmix(state_++ * 0x9E3779B97F4A7C15ULL); }
  // Uniform integer in [0, n) by rejection (no modulo bias).
  std::uint64_t below(std::uint64_t n) {
    const std::uint64_t limit = ~std::uint64_t(0) - (~std::uint64_t(0) % n);
    std::uint64_t x;
    do x = next(); while (x >= limit);
    return x % n;
  }

 private:
  std::uint64_t state_;
};

std::uint64_t choose2(std::uint64_t n) { return n < 2 ? 0 : n * (n - 1) / 2; }

// The k-th pair (a < b) of n items in row order (0,1), (0,2), ..., (0,n-1), (1,2), ...
std::pair<std::uint64_t, std::uint64_t> unrank_pair(std::uint64_t k, std::uint64_t n) {
  // before(a) = number of pairs whose first element is < a.
  auto before = [n](std::uint64_t a) { return a * n - a * (a + 1) / 2; };
  // Invariant: before(lo) <= k < before(hi); before(n - 1) is the total count.
  std::uint64_t lo = 0, hi = n - 1;
  while (lo + 1 < hi) {
    const std::uint64_t mid = (lo + hi) / 2;
    (before(mid) <= k ? lo : hi) = mid;
  }
  const std::uint64_t a = lo;
  return {a, a + 1 + (k - before(a))};
}

// n distinct values from [0, total), uniformly, in random order (Floyd's algorithm, then shuffle).
std::vector<std::uint64_t> sample_distinct(std::uint64_t total, std::uint64_t n, Rng& rng) {
  std::unordered_set<std::uint64_t> chosen;
  std::vector<std::uint64_t> out;
  out.reserve(n);
  chosen.reserve(n * 2);
  for (std::uint64_t j = total - n; j < total; ++j) {
    const std::uint64_t t = rng.below(j + 1);
    const std::uint64_t v = chosen.count(t) ? j : t;
    chosen.insert(v);
    out.push_back(v);
  }
  for (std::uint64_t i = out.size(); i > 1; --i) std::swap(out[i - 1], out[rng.below(i)]);
  return out;
}

PairSet base_set(const Manifest& manifest, std::uint64_t seed, const std::string& mode) {
  PairSet set;
  for (const auto& image : manifest.images) {
    set.image_paths.push_back(image.path);
    set.reference_ids.push_back(image.reference_id);
  }
  set.root = manifest.root;
  set.seed = seed;
  set.mode = mode;
  set.manifest = manifest.source;
  set.creation_time = h5::utc_now();
  return set;
}

}  // namespace

std::string PairSet::resolve(std::int64_t image) const {
  const std::filesystem::path p(image_paths.at(std::size_t(image)));
  return p.is_absolute() ? p.string() : (std::filesystem::path(root) / p).string();
}

std::uint64_t counter_hash(std::uint64_t seed, std::uint64_t a, std::uint64_t b) {
  return splitmix(splitmix(splitmix(seed) ^ a) ^ b);
}

std::uint64_t count_random_pairs(std::size_t n_images) { return choose2(n_images); }

std::uint64_t count_same_reference_pairs(const std::vector<std::string>& reference_ids) {
  std::map<std::string, std::uint64_t> groups;
  for (const auto& r : reference_ids)
    if (!r.empty()) ++groups[r];
  std::uint64_t total = 0;
  for (const auto& [ref, n] : groups) total += choose2(n);
  return total;
}

PairSet sample_random_pairs(const Manifest& manifest, std::uint64_t n, std::uint64_t seed) {
  const std::uint64_t total = count_random_pairs(manifest.images.size());
  EVOQ_CHECK(n > 0, "the number of pairs must be > 0");
  EVOQ_CHECK(n <= total, "asked for ", n, " pairs but the ", manifest.images.size(), " images of '",
             manifest.source, "' give only ", total, " distinct pairs");
  PairSet set = base_set(manifest, seed, "random");
  Rng rng(seed);
  for (std::uint64_t k : sample_distinct(total, n, rng)) {
    auto [a, b] = unrank_pair(k, manifest.images.size());
    set.first.push_back(std::int64_t(a));
    set.second.push_back(std::int64_t(b));
  }
  return set;
}

PairSet sample_same_reference_pairs(const Manifest& manifest, std::uint64_t n, std::uint64_t seed) {
  // Groups in a fixed order (sorted reference ids), members in manifest order.
  std::map<std::string, std::vector<std::int64_t>> groups;
  for (std::size_t i = 0; i < manifest.images.size(); ++i)
    if (!manifest.images[i].reference_id.empty()) groups[manifest.images[i].reference_id].push_back(std::int64_t(i));
  std::vector<const std::vector<std::int64_t>*> members;
  std::vector<std::uint64_t> offsets{0};  // offsets[g] = pairs in groups before g
  for (const auto& [ref, m] : groups) {
    if (m.size() < 2) continue;
    members.push_back(&m);
    offsets.push_back(offsets.back() + choose2(m.size()));
  }
  const std::uint64_t total = offsets.back();
  EVOQ_CHECK(n > 0, "the number of pairs must be > 0");
  EVOQ_CHECK(n <= total, "asked for ", n, " same-reference pairs but '", manifest.source, "' gives only ", total,
             " (", groups.size(), " reference ids)");
  PairSet set = base_set(manifest, seed, "same-reference");
  Rng rng(seed);
  for (std::uint64_t k : sample_distinct(total, n, rng)) {
    const std::size_t g = std::size_t(std::upper_bound(offsets.begin(), offsets.end(), k) - offsets.begin() - 1);
    auto [a, b] = unrank_pair(k - offsets[g], members[g]->size());
    set.first.push_back((*members[g])[a]);
    set.second.push_back((*members[g])[b]);
  }
  return set;
}

PairSet read_pair_list(const Manifest& manifest, const std::string& list_file) {
  std::ifstream in(list_file);
  EVOQ_CHECK(in, "pair list '", list_file, "': cannot open");
  PairSet set = base_set(manifest, 0, "list");
  std::unordered_map<std::string, std::int64_t> index;
  for (std::size_t i = 0; i < manifest.images.size(); ++i) index[manifest.images[i].path] = std::int64_t(i);
  auto trim = [](std::string s) {
    const auto b = s.find_first_not_of(" \t\r\n");
    if (b == std::string::npos) return std::string();
    return s.substr(b, s.find_last_not_of(" \t\r\n") - b + 1);
  };
  auto lookup = [&](const std::string& token, const std::string& where) -> std::int64_t {
    if (auto it = index.find(token); it != index.end()) return it->second;
    if (!token.empty() && token.find_first_not_of("0123456789") == std::string::npos) {
      const auto v = std::stoull(token);
      EVOQ_CHECK(v < manifest.images.size(), where, ": image index ", v, " out of range (", manifest.images.size(),
                 " images)");
      return std::int64_t(v);
    }
    fail(where, ": image '", token, "' is not in the manifest");
  };
  std::set<std::pair<std::int64_t, std::int64_t>> seen;
  std::string line;
  int line_no = 0;
  while (std::getline(in, line)) {
    ++line_no;
    line = trim(line);
    if (line.empty() || line[0] == '#') continue;
    const std::string where = "pair list '" + list_file + "' line " + std::to_string(line_no);
    const auto comma = line.find(',');
    EVOQ_CHECK(comma != std::string::npos, where, ": expected 'image_a,image_b'");
    const std::string a_tok = trim(line.substr(0, comma)), b_tok = trim(line.substr(comma + 1));
    if (line_no == 1 && index.find(a_tok) == index.end() && (a_tok == "first" || a_tok == "path_a")) continue;
    const std::int64_t a = lookup(a_tok, where), b = lookup(b_tok, where);
    EVOQ_CHECK(a != b, where, ": self-pair of '", manifest.images[a].path, "'");
    EVOQ_CHECK(seen.insert({std::min(a, b), std::max(a, b)}).second, where, ": duplicate pair");
    set.first.push_back(a);
    set.second.push_back(b);
  }
  EVOQ_CHECK(!set.first.empty(), "pair list '", list_file, "' holds no pairs");
  return set;
}

void write_pairs_h5(const std::string& path, const PairSet& pairs) {
  h5::write_file_atomic(path, [&](H5::H5File& file) {
    h5::set_attr(file, "schema_version", kPairsSchemaVersion);
    h5::set_attr(file, "format", std::string("evoq-pairs"));
    h5::set_attr_u64(file, "seed", pairs.seed);
    h5::set_attr(file, "mode", pairs.mode);
    h5::set_attr(file, "manifest", pairs.manifest);
    h5::set_attr(file, "root", pairs.root);
    h5::set_attr(file, "creation_time", pairs.creation_time.empty() ? h5::utc_now() : pairs.creation_time);
    h5::set_attr(file, "num_pairs", std::int64_t(pairs.size()));
    h5::set_attr(file, "num_images", std::int64_t(pairs.image_paths.size()));
    h5::write_strings(file, "image_path", pairs.image_paths);
    h5::write_strings(file, "reference_id", pairs.reference_ids);
    h5::write_vector(file, "pair_i", pairs.first);
    h5::write_vector(file, "pair_j", pairs.second);
  });
}

PairSet read_pairs_h5(const std::string& path) {
  auto file = h5::open_read(path);
  PairSet set;
  try {
    const auto version = h5::get_attr_int(file, "schema_version");
    EVOQ_CHECK(version == kPairsSchemaVersion, "'", path, "': pairs schema_version ", version, " (this evoq reads ",
               kPairsSchemaVersion, ")");
    set.seed = h5::get_attr_u64(file, "seed");
    set.mode = h5::get_attr_string(file, "mode");
    set.manifest = h5::get_attr_string(file, "manifest");
    set.root = h5::get_attr_string(file, "root");
    set.creation_time = h5::get_attr_string(file, "creation_time");
    set.image_paths = h5::read_strings(file, "image_path");
    set.reference_ids = h5::read_strings(file, "reference_id");
    set.first = h5::read_vector<std::int64_t>(file, "pair_i");
    set.second = h5::read_vector<std::int64_t>(file, "pair_j");
  } catch (const H5::Exception& e) {
    fail("'", path, "': cannot read pairs (", e.getDetailMsg(), ")");
  } catch (const Error& e) {
    fail("'", path, "': ", e.what());
  }
  EVOQ_CHECK(set.first.size() == set.second.size(), "'", path, "': pair_i and pair_j differ in length");
  const auto n = std::int64_t(set.image_paths.size());
  for (std::size_t p = 0; p < set.size(); ++p)
    EVOQ_CHECK(set.first[p] >= 0 && set.first[p] < n && set.second[p] >= 0 && set.second[p] < n,
               "'", path, "': pair ", p, " refers to an image index out of range");
  return set;
}

}  // namespace evoq::evo
