/// @file io/npz.hpp
/// @brief Read and write NumPy `.npz` archives: a ZIP file of `.npy`
///        members, one per named array (host profile).
///
/// @code
///   // C++ → Python
///   tl::io::npz_writer w;
///   w.add("fc1.weight", w1);             // any basic_npy_array<T>
///   w.add("labels", shape, labels_span);
///   w.save("model.npz");                 // np.load("model.npz")["fc1.weight"]
///
///   // Python → C++ (np.savez or np.savez_compressed)
///   auto arrays = tl::io::load_npz("model.npz");   // std::map<name, npy_array>
///   auto archive = tl::io::npz_archive::load("mixed.npz");
///   auto ids = archive.get<std::int64_t>("ids");
/// @endcode
///
/// Writing produces STORED (uncompressed) members with CRC-32, a central
/// directory and fixed timestamps (1980-01-01), so the same arrays always give
/// the same bytes. Reading accepts STORED and DEFLATED members (NumPy's
/// `savez` and `savez_compressed`), ZIP64 size fields (NumPy writes them with
/// `force_zip64`), and data descriptors; it rejects encryption, other
/// compression methods, multi-disk archives, members that are not `.npy`,
/// duplicate names, out-of-range offsets and sizes, and CRC-32
/// mismatches, and members that overlap or share data (zip bombs). Every size
/// is checked against the file and `npy_limits` before anything is
/// allocated: the members' total against `max_bytes` and against
/// `max_ratio` × the archive's size, and a DEFLATED member may not declare
/// more than DEFLATE's maximum ratio (1032:1) allows.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <map>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "../core/config.hpp"
#include "../core/crc32.hpp"
#include "../core/error.hpp"
#include "file.hpp"
#include "gzip.hpp"
#include "npy.hpp"
#include "npy_format.hpp"

namespace tinylarge::io {

/// One member of a ZIP archive, from its central-directory record.
struct zip_entry {
  std::string name;               ///< file name inside the archive
  std::uint16_t method = 0;       ///< 0 STORED, 8 DEFLATED
  std::uint32_t crc = 0;          ///< CRC-32 of the uncompressed data
  std::uint64_t compressed = 0;   ///< compressed size in bytes
  std::uint64_t size = 0;         ///< uncompressed size in bytes
  std::uint64_t data_offset = 0;  ///< offset of the member's data in the archive
  std::uint64_t local_offset = 0; ///< offset of the member's local header
};

namespace detail {

constexpr std::uint16_t le16(const std::uint8_t* p) noexcept {
  return static_cast<std::uint16_t>(p[0] | p[1] << 8);
}
constexpr std::uint32_t le32(const std::uint8_t* p) noexcept {
  return static_cast<std::uint32_t>(p[0]) | static_cast<std::uint32_t>(p[1]) << 8 |
         static_cast<std::uint32_t>(p[2]) << 16 | static_cast<std::uint32_t>(p[3]) << 24;
}
constexpr std::uint64_t le64(const std::uint8_t* p) noexcept {
  return static_cast<std::uint64_t>(le32(p)) | static_cast<std::uint64_t>(le32(p + 4)) << 32;
}
inline void put16(std::vector<std::uint8_t>& b, std::size_t v) {
  b.push_back(static_cast<std::uint8_t>(v));
  b.push_back(static_cast<std::uint8_t>(v >> 8));
}
inline void put32(std::vector<std::uint8_t>& b, std::size_t v) {
  put16(b, v & 0xFFFFu);
  put16(b, (v >> 16) & 0xFFFFu);
}

inline constexpr std::uint32_t zip_local_sig = 0x04034b50u;
inline constexpr std::uint32_t zip_central_sig = 0x02014b50u;
inline constexpr std::uint32_t zip_end_sig = 0x06054b50u;
inline constexpr std::uint32_t zip64_end_sig = 0x06064b50u;
inline constexpr std::uint32_t zip64_locator_sig = 0x07064b50u;

/// Whether [off, off + len) lies within a buffer of `size` bytes.
constexpr bool in_bounds(std::uint64_t off, std::uint64_t len, std::uint64_t size) noexcept {
  return off <= size && len <= size - off;
}

}  // namespace detail

/// Read the central directory of a ZIP archive held in memory (untrusted).
///
/// Fills `out` with one entry per member, each validated: its local header
/// exists and agrees with the central record, and its data lies inside the
/// archive before the central directory. The members' declared sizes
/// together may not exceed `limits.max_bytes` nor the ratio budget
/// (`decompression_budget` of the archive's size; `too_large`), and no two
/// members may overlap or share bytes (`corrupt`).
[[nodiscard]] inline status parse_zip_directory(std::span<const std::uint8_t> zip,
                                                std::vector<zip_entry>& out,
                                                const npy_limits& limits = {}) {
  using namespace detail;
  out.clear();
  const std::size_t n = zip.size();
  const std::uint8_t* b = zip.data();
  TINYLARGE_CHECK(n >= 22, errc::truncated,
                  "ZIP archive is shorter than its 22-byte end-of-central-directory record");
  // The end record is the last 22 bytes plus a comment of up to 65535 bytes.
  std::size_t eocd = n;
  for (std::size_t i = n - 22 + 1; i-- > 0 && n - i <= 22 + 65535;) {
    if (le32(b + i) == zip_end_sig && i + 22 + le16(b + i + 20) == n) {
      eocd = i;
      break;
    }
  }
  TINYLARGE_CHECK(eocd != n, errc::corrupt,
                  "not a ZIP archive (no end-of-central-directory record; truncated file?)");
  TINYLARGE_CHECK(le16(b + eocd + 4) == 0 && le16(b + eocd + 6) == 0, errc::unsupported_version,
                  "multi-disk ZIP archives are not supported");
  std::uint64_t entries = le16(b + eocd + 10);
  std::uint64_t cd_size = le32(b + eocd + 12);
  std::uint64_t cd_offset = le32(b + eocd + 16);
  TINYLARGE_CHECK(le16(b + eocd + 8) == entries, errc::corrupt,
                  "ZIP end record: entry counts disagree");
  if (entries == 0xFFFF || cd_size == 0xFFFFFFFFu || cd_offset == 0xFFFFFFFFu) {
    // ZIP64: a locator precedes the end record and points to the ZIP64 end record.
    TINYLARGE_CHECK(eocd >= 20 && le32(b + eocd - 20) == zip64_locator_sig, errc::corrupt,
                    "ZIP64 end-of-central-directory locator is missing");
    const std::uint64_t z64 = le64(b + eocd - 20 + 8);
    TINYLARGE_CHECK(in_bounds(z64, 56, eocd - 20) && le32(b + z64) == zip64_end_sig, errc::corrupt,
                    "ZIP64 end-of-central-directory record is missing");
    entries = le64(b + z64 + 32);
    TINYLARGE_CHECK(le64(b + z64 + 24) == entries, errc::corrupt,
                    "ZIP64 end record: entry counts disagree");
    cd_size = le64(b + z64 + 40);
    cd_offset = le64(b + z64 + 48);
  }
  TINYLARGE_CHECK(
      entries <= limits.max_members, errc::too_large,
      "ZIP archive has more members than the configured limit (npy_limits::max_members)");
  TINYLARGE_CHECK(in_bounds(cd_offset, cd_size, eocd), errc::truncated,
                  "ZIP central directory lies outside the file (truncated archive?)");
  TINYLARGE_CHECK(cd_size >= entries * 46, errc::corrupt,
                  "ZIP central directory is too small for its entry count");
  out.reserve(static_cast<std::size_t>(entries));
  const std::size_t budget =
      decompression_budget(n, limits.max_bytes, limits.max_ratio, limits.ratio_floor);
  std::uint64_t p = cd_offset;
  const std::uint64_t cd_end = cd_offset + cd_size;
  std::uint64_t total = 0;
  for (std::uint64_t e = 0; e < entries; ++e) {
    TINYLARGE_CHECK(in_bounds(p, 46, cd_end), errc::corrupt,
                    "ZIP central directory ends inside a record");
    const std::uint8_t* c = b + p;
    TINYLARGE_CHECK(le32(c) == zip_central_sig, errc::corrupt,
                    "ZIP central directory record has a bad signature");
    const std::uint16_t flags = le16(c + 8);
    TINYLARGE_CHECK((flags & 0x41u) == 0, errc::unsupported_version,
                    "encrypted ZIP members are not supported");
    zip_entry z;
    z.method = le16(c + 10);
    z.crc = le32(c + 16);
    z.compressed = le32(c + 20);
    z.size = le32(c + 24);
    const std::size_t name_len = le16(c + 28), extra_len = le16(c + 30), comment_len = le16(c + 32);
    std::uint64_t local = le32(c + 42);
    TINYLARGE_CHECK(in_bounds(p + 46, name_len + extra_len + comment_len, cd_end), errc::corrupt,
                    "ZIP central directory record overruns the directory");
    z.name.assign(reinterpret_cast<const char*>(c + 46), name_len);
    // ZIP64 extended information: 64-bit values for the fields set to all ones.
    const std::uint8_t* x = c + 46 + name_len;
    const std::uint8_t* x_end = x + extra_len;
    while (x_end - x >= 4) {
      const std::uint16_t id = le16(x), len = le16(x + 2);
      TINYLARGE_CHECK(x_end - (x + 4) >= len, errc::corrupt, "ZIP extra field overruns its record");
      if (id == 0x0001) {
        const std::uint8_t* f = x + 4;
        std::size_t left = len;
        auto take = [&](std::uint64_t& v) {
          if (v != 0xFFFFFFFFu) return true;
          if (left < 8) return false;
          v = le64(f);
          f += 8;
          left -= 8;
          return true;
        };
        TINYLARGE_CHECK(take(z.size) && take(z.compressed) && take(local), errc::corrupt,
                        "ZIP64 extra field is shorter than the sizes it must hold");
      }
      x += 4 + len;
    }
    TINYLARGE_CHECK(z.method == 0 || z.method == 8, errc::unsupported_version,
                    "ZIP member uses a compression method other than STORED or DEFLATED");
    TINYLARGE_CHECK(z.method != 0 || z.compressed == z.size, errc::corrupt,
                    "STORED ZIP member has different compressed and uncompressed sizes");
    // DEFLATE expands at most 1032:1; a larger claim is a bomb or corruption.
    TINYLARGE_CHECK(z.method != 8 || z.size / 1032 <= z.compressed, errc::corrupt,
                    "DEFLATED ZIP member declares an impossible uncompressed size");
    TINYLARGE_CHECK(z.size <= limits.max_bytes && total <= limits.max_bytes - z.size,
                    errc::too_large,
                    "ZIP members are larger than the configured limit (npy_limits::max_bytes)");
    TINYLARGE_CHECK(total + z.size <= budget, errc::too_large,
                    "ZIP members decompress to more than npy_limits::max_ratio times the "
                    "archive's size (a decompression bomb?)");
    total += z.size;
    // The local header repeats the name and may carry its own extra field.
    TINYLARGE_CHECK(in_bounds(local, 30, cd_offset), errc::corrupt,
                    "ZIP member's local header lies outside the file");
    const std::uint8_t* lh = b + local;
    TINYLARGE_CHECK(le32(lh) == zip_local_sig, errc::corrupt,
                    "ZIP member's local header has a bad signature");
    const std::size_t lname = le16(lh + 26), lextra = le16(lh + 28);
    TINYLARGE_CHECK(lname == name_len && in_bounds(local + 30, lname, cd_offset) &&
                        std::memcmp(lh + 30, z.name.data(), lname) == 0,
                    errc::corrupt, "ZIP local header and central directory disagree on the name");
    TINYLARGE_CHECK(le16(lh + 8) == z.method, errc::corrupt,
                    "ZIP local header and central directory disagree on the method");
    z.local_offset = local;
    z.data_offset = local + 30 + lname + lextra;
    TINYLARGE_CHECK(in_bounds(z.data_offset, z.compressed, cd_offset), errc::truncated,
                    "ZIP member's data extends past the start of the central directory");
    out.push_back(std::move(z));
    p += 46 + name_len + extra_len + comment_len;
  }
  // Each member (local header through the end of its data) must occupy its
  // own bytes: overlapping or aliased members are how small archives claim
  // huge contents (several headers sharing one deflate stream).
  std::vector<std::pair<std::uint64_t, std::uint64_t>> spans;  // [local header, end of data)
  spans.reserve(out.size());
  for (const zip_entry& e : out) spans.emplace_back(e.local_offset, e.data_offset + e.compressed);
  std::sort(spans.begin(), spans.end());
  for (std::size_t i = 1; i < spans.size(); ++i)
    TINYLARGE_CHECK(spans[i].first >= spans[i - 1].second, errc::corrupt,
                    "ZIP members overlap or share their data (a zip-bomb construction)");
  return status::success();
}

/// Decompress (or copy) one member and verify its CRC-32.
[[nodiscard]] inline status extract_zip_entry(std::span<const std::uint8_t> zip, const zip_entry& e,
                                              std::vector<std::uint8_t>& out) {
  TINYLARGE_CHECK(detail::in_bounds(e.data_offset, e.compressed, zip.size()), errc::truncated,
                  "ZIP member's data lies outside the archive");
  const auto src =
      zip.subspan(static_cast<std::size_t>(e.data_offset), static_cast<std::size_t>(e.compressed));
  out.resize(static_cast<std::size_t>(e.size));
  if (e.method == 0) {
    if (!out.empty()) std::memcpy(out.data(), src.data(), out.size());
  } else {
    TINYLARGE_TRY(inflate_raw(src, out));
  }
  TINYLARGE_CHECK(crc32(out.data(), out.size()) == e.crc, errc::checksum_mismatch,
                  "ZIP member's CRC-32 does not match its data");
  return status::success();
}

/// A `.npz` archive read into memory: named `.npy` members, each validated,
/// converted to the element type asked for on access.
class npz_archive {
 public:
  /// Parse a `.npz` held in memory (untrusted). On failure, `failed_member`
  /// (when given) receives the name of the member at fault, if any.
  [[nodiscard]] static status decode(std::span<const std::uint8_t> zip, npz_archive& out,
                                     const npy_limits& limits = {},
                                     std::string* failed_member = nullptr) {
    out.members_.clear();
    std::vector<zip_entry> entries;
    TINYLARGE_TRY(parse_zip_directory(zip, entries, limits));
    for (const zip_entry& e : entries) {
      if (failed_member != nullptr) *failed_member = e.name;
      const std::string& n = e.name;
      TINYLARGE_CHECK(n.size() > 4 && n.compare(n.size() - 4, 4, ".npy") == 0, errc::corrupt,
                      ".npz member is not a .npy file (its name does not end in .npy)");
      std::string key = n.substr(0, n.size() - 4);
      TINYLARGE_CHECK(out.members_.count(key) == 0, errc::corrupt,
                      ".npz archive holds two members with the same name");
      std::vector<std::uint8_t> bytes;
      TINYLARGE_TRY(extract_zip_entry(zip, e, bytes));
      npy_header h;
      TINYLARGE_TRY(parse_npy(bytes, h, limits));
      out.members_.emplace(std::move(key), std::move(bytes));
    }
    if (failed_member != nullptr) failed_member->clear();
    return status::success();
  }

  /// Read and validate the `.npz` file `path`.
  /// @throws tl::io_error, tl::format_error (the message names the file and
  ///         the member at fault).
  static npz_archive load(const std::string& path, const npy_limits& limits = {}) {
    const std::vector<std::uint8_t> bytes = read_file(path, compressed_file_limit(limits.max_bytes));
    npz_archive a;
    std::string member;
    const status s = decode(bytes, a, limits, &member);
    if (!s.ok())
      TINYLARGE_RAISE(s.code, "tinylarge: cannot load " + detail::quoted(path) +
                                  (member.empty() ? std::string() : " (member '" + member + "')") +
                                  ": " + s.message);
    a.source_ = path;
    return a;
  }

  /// Array names (member names without `.npy`), sorted.
  std::vector<std::string> names() const {
    std::vector<std::string> v;
    v.reserve(members_.size());
    for (const auto& m : members_) v.push_back(m.first);
    return v;
  }
  /// Number of arrays.
  std::size_t size() const noexcept { return members_.size(); }
  /// Whether an array called `name` exists.
  bool contains(const std::string& name) const { return members_.count(name) != 0; }

  /// The header (dtype, shape) of array `name`; `data` points into the archive.
  /// @throws tl::invalid_argument when there is no such array.
  npy_header header(const std::string& name) const {
    npy_header h;
    const status s = parse_npy(member(name), h);
    raise_if_error(s);  // validated in decode(); cannot fail
    return h;
  }

  /// Array `name` converted to `T`.
  /// @throws tl::invalid_argument when there is no such array or its values
  ///         do not convert to `T`.
  template <npy_element T = float>
  basic_npy_array<T> get(const std::string& name) const {
    basic_npy_array<T> a;
    const status s = decode_npy(std::span<const std::uint8_t>(member(name)), a,
                                npy_limits{SIZE_MAX, SIZE_MAX, SIZE_MAX});
    if (!s.ok())
      TINYLARGE_RAISE(s.code, "tinylarge: array '" + name + "'" + where() + ": " + s.message);
    return a;
  }

 private:
  const std::vector<std::uint8_t>& member(const std::string& name) const {
    const auto it = members_.find(name);
    if (it == members_.end()) {
      std::string have;
      for (const auto& m : members_) have += (have.empty() ? "" : ", ") + m.first;
      TINYLARGE_RAISE(errc::invalid_argument,
                      "tinylarge: no array '" + name + "'" + where() +
                          "; it holds: " + (have.empty() ? "nothing" : have));
    }
    return it->second;
  }
  std::string where() const { return source_.empty() ? "" : " in " + detail::quoted(source_); }

  std::map<std::string, std::vector<std::uint8_t>> members_;  // name → .npy bytes
  std::string source_;                                        // file name, for messages
};

/// Read every array of the `.npz` file `path`, converted to `T`.
/// @throws as `npz_archive::load` and `npz_archive::get`.
template <npy_element T = float>
std::map<std::string, basic_npy_array<T>> load_npz(const std::string& path,
                                                   const npy_limits& limits = {}) {
  const npz_archive a = npz_archive::load(path, limits);
  std::map<std::string, basic_npy_array<T>> out;
  for (const std::string& n : a.names()) out.emplace(n, a.get<T>(n));
  return out;
}

/// Builds a `.npz` archive of STORED members, in the order they are added.
class npz_writer {
 public:
  /// Add array `name` (stored as member `name + ".npy"`).
  /// @throws tl::invalid_argument (empty or duplicate name), tl::shape_error
  ///         (`data.size()` is not the product of `shape`).
  template <npy_element T>
  npz_writer& add(const std::string& name, std::span<const std::size_t> shape,
                  std::span<const T> data) {
    TINYLARGE_REQUIRE(!name.empty() && name.size() <= 65000, errc::invalid_argument,
                      "tinylarge: npz_writer: an array name must have 1 to 65000 bytes");
    for (const auto& m : members_)
      TINYLARGE_REQUIRE(m.first != name + ".npy", errc::invalid_argument,
                        "tinylarge: npz_writer: array '" + name + "' was added twice");
    members_.emplace_back(name + ".npy", encode_npy<T>(shape, data));
    return *this;
  }
  /// Add `a` under `name`.
  template <npy_element T>
  npz_writer& add(const std::string& name, const basic_npy_array<T>& a) {
    return add<T>(name, std::span<const std::size_t>(a.shape), std::span<const T>(a.data));
  }

  /// The archive's bytes.
  /// @throws tl::format_error when it would need ZIP64 (≥ 4 GiB or ≥ 65535 members).
  std::vector<std::uint8_t> bytes() const {
    using namespace detail;
    std::vector<std::uint8_t> z, cd;
    TINYLARGE_REQUIRE(members_.size() < 0xFFFF, errc::too_large,
                      "tinylarge: npz_writer: more than 65534 arrays need ZIP64, not supported");
    constexpr std::size_t dos_time = 0, dos_date = (0u << 9) | (1u << 5) | 1u;  // 1980-01-01
    for (const auto& [name, data] : members_) {
      const std::size_t offset = z.size();
      TINYLARGE_REQUIRE(
          data.size() < 0xFFFFFFFFu && offset < 0xFFFFFFFFu, errc::too_large,
          "tinylarge: npz_writer: archives of 4 GiB or more need ZIP64, not supported");
      const std::uint32_t crc = crc32(data.data(), data.size());
      put32(z, zip_local_sig);
      put16(z, 20);  // version needed: 2.0
      put16(z, 0);   // flags
      put16(z, 0);   // STORED
      put16(z, dos_time);
      put16(z, dos_date);
      put32(z, crc);
      put32(z, data.size());
      put32(z, data.size());
      put16(z, name.size());
      put16(z, 0);  // extra length
      z.insert(z.end(), name.begin(), name.end());
      z.insert(z.end(), data.begin(), data.end());

      put32(cd, zip_central_sig);
      put16(cd, (3u << 8) | 20u);  // made by: Unix, 2.0
      put16(cd, 20);
      put16(cd, 0);
      put16(cd, 0);
      put16(cd, dos_time);
      put16(cd, dos_date);
      put32(cd, crc);
      put32(cd, data.size());
      put32(cd, data.size());
      put16(cd, name.size());
      put16(cd, 0);            // extra
      put16(cd, 0);            // comment
      put16(cd, 0);            // disk
      put16(cd, 0);            // internal attributes
      put32(cd, 0644u << 16);  // external attributes: -rw-r--r--
      put32(cd, offset);
      cd.insert(cd.end(), name.begin(), name.end());
    }
    const std::size_t cd_offset = z.size();
    TINYLARGE_REQUIRE(cd_offset < 0xFFFFFFFFu && cd.size() < 0xFFFFFFFFu, errc::too_large,
                      "tinylarge: npz_writer: archives of 4 GiB or more need ZIP64, not supported");
    z.insert(z.end(), cd.begin(), cd.end());
    put32(z, zip_end_sig);
    put16(z, 0);
    put16(z, 0);
    put16(z, members_.size());
    put16(z, members_.size());
    put32(z, cd.size());
    put32(z, cd_offset);
    put16(z, 0);  // comment length
    return z;
  }

  /// Write the archive to `path` (atomically).
  void save(const std::string& path) const { write_file(path, bytes()); }

 private:
  std::vector<std::pair<std::string, std::vector<std::uint8_t>>> members_;  // member name, .npy
};

/// Write every array of `arrays` to the `.npz` file `path`, one STORED member
/// per entry (`np.load(path)[name]` reads it back).
template <npy_element T>
void save_npz(const std::string& path, const std::map<std::string, basic_npy_array<T>>& arrays) {
  npz_writer w;
  for (const auto& [name, a] : arrays) w.add(name, a);
  w.save(path);
}

}  // namespace tinylarge::io
