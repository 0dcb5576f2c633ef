// Three functions that jazzer.js's prebuilt fuzzer (built against glibc 2.38
// and GCC 13's libstdc++) calls and Debian 12 (glibc 2.36, GCC 12) lacks.
// fuzz/jazzer-compat.ts builds this into a shared library and preloads it.
#include <cstdlib>
#include <ios>

// C23 spellings of strtol/strtoul (they also accept a 0b prefix, which the
// fuzzer's option parsing never needs).
extern "C" long __isoc23_strtol(const char *text, char **end, int base) {
  return std::strtol(text, end, base);
}
extern "C" unsigned long __isoc23_strtoul(const char *text, char **end, int base) {
  return std::strtoul(text, end, base);
}

// GCC 13's <iostream> calls this to make sure the standard streams exist;
// GCC 12 does the same with one ios_base::Init object.
namespace std {
void ios_base_library_init() { static ios_base::Init init; }
}
