// Byte map, UTF-8 repair and NFC against hand-derived values.
#include <gtest/gtest.h>

#include "evoq/text/byte_level.h"
#include "evoq/text/unicode.h"

using namespace evoq::text;

TEST(ByteLevel, PrintableBytesMapToThemselves) {
  EXPECT_EQ(byte_to_unicode('!'), U'!');
  EXPECT_EQ(byte_to_unicode('~'), U'~');
  EXPECT_EQ(byte_to_unicode(0xA1), U'\u00A1');
  EXPECT_EQ(byte_to_unicode(0xFF), U'\u00FF');
}

TEST(ByteLevel, OtherBytesMapAboveU0100InOrder) {
  // Bytes 0..32 come first (U+0100..U+0120), then 127..160 (U+0121..U+0142), then 173 (U+0143).
  EXPECT_EQ(byte_to_unicode(0x00), U'\u0100');
  EXPECT_EQ(byte_to_unicode('\n'), U'\u010A');  // "Ċ"
  EXPECT_EQ(byte_to_unicode(' '), U'\u0120');   // "Ġ"
  EXPECT_EQ(byte_to_unicode(0x7F), U'\u0121');
  EXPECT_EQ(byte_to_unicode(0xA0), U'\u0142');
  EXPECT_EQ(byte_to_unicode(0xAD), U'\u0143');
}

TEST(ByteLevel, RoundTripsEveryByte) {
  std::string all;
  for (int b = 0; b < 256; ++b) {
    all += static_cast<char>(b);
    EXPECT_EQ(unicode_to_byte(byte_to_unicode(static_cast<unsigned char>(b))), static_cast<unsigned char>(b));
  }
  EXPECT_EQ(byte_level_to_bytes(bytes_to_byte_level(all)), all);
  EXPECT_EQ(bytes_to_byte_level(" Hello\n"), "\xC4\xA0Hello\xC4\x8A");  // "ĠHelloĊ"
  EXPECT_FALSE(byte_level_to_bytes("\xE4\xBD\xA0"));                      // "你" is not in the map
  EXPECT_FALSE(unicode_to_byte(U'\u0144'));
}

TEST(Utf8, ValidityFollowsTheUnicodeTable) {
  EXPECT_TRUE(is_valid_utf8("plain ascii"));
  EXPECT_TRUE(is_valid_utf8("\xE2\x82\xAC \xF0\x9F\x98\x80 \xC3\xA9"));
  EXPECT_FALSE(is_valid_utf8("\xC0\xAF"));          // overlong
  EXPECT_FALSE(is_valid_utf8("\xED\xA0\x80"));      // surrogate
  EXPECT_FALSE(is_valid_utf8("\xF4\x90\x80\x80"));  // above U+10FFFF
  EXPECT_FALSE(is_valid_utf8("\xE2\x82"));          // truncated
}

TEST(Utf8, LossyReplacesMaximalInvalidSubparts) {
  const std::string fffd = "\xEF\xBF\xBD";
  EXPECT_EQ(utf8_lossy("ok"), "ok");
  EXPECT_EQ(utf8_lossy("\xE2\x82" "A"), fffd + "A");            // one prefix of a valid sequence
  EXPECT_EQ(utf8_lossy("\xF0\x80\x80"), fffd + fffd + fffd);     // F0 needs 90..BF next
  EXPECT_EQ(utf8_lossy("\xED\xA0\x80"), fffd + fffd + fffd);     // surrogates
  EXPECT_EQ(utf8_lossy("\xC0\xAF"), fffd + fffd);
  EXPECT_EQ(utf8_lossy("a\xF0\x9F\x98"), "a" + fffd);            // truncated at the end
  EXPECT_EQ(utf8_lossy("\x80\xBF"), fffd + fffd);
  EXPECT_EQ(utf8_lossy("\xFF\xE2\x82\xAC"), fffd + "\xE2\x82\xAC");
}

TEST(Nfc, ComposesDecomposedText) {
  EXPECT_EQ(nfc("e\xCC\x81"), "\xC3\xA9");              // e + combining acute -> é
  EXPECT_EQ(nfc("\xE2\x84\xAB"), "\xC3\x85");           // ANGSTROM SIGN -> Å
  EXPECT_EQ(nfc("\xE1\x84\x80\xE1\x85\xA1"), "\xEA\xB0\x80");  // Hangul jamo -> 가
  EXPECT_EQ(nfc("already NFC \xC3\xA9"), "already NFC \xC3\xA9");
  EXPECT_EQ(nfc(""), "");
}

TEST(Utf8, AppendEncodesEveryLength) {
  std::string s;
  append_utf8(s, U'A');
  append_utf8(s, U'\u00E9');
  append_utf8(s, U'\u4F60');
  append_utf8(s, U'\U0001F600');
  EXPECT_EQ(s, "A\xC3\xA9\xE4\xBD\xA0\xF0\x9F\x98\x80");
}
