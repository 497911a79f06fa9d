// The one Catch2 main shared by every test executable.
//
// Without exceptions (-fno-exceptions), Catch2 v2 cannot unwind out of a
// failed REQUIRE; it calls Catch::throw_exception instead, and the test run
// must end there. Catch's default handler calls std::terminate, which loses
// the buffered report of the failing assertion when stdout is a pipe (as under
// ctest). This one flushes the report, says why, and exits with a failure code.
#if !defined(__cpp_exceptions) && !defined(__EXCEPTIONS)
#if !defined(CATCH_CONFIG_DISABLE_EXCEPTIONS)
#define CATCH_CONFIG_DISABLE_EXCEPTIONS
#endif
#define CATCH_CONFIG_DISABLE_EXCEPTIONS_CUSTOM_HANDLER
#endif

#define CATCH_CONFIG_MAIN
#include <catch2/catch.hpp>

#if defined(CATCH_CONFIG_DISABLE_EXCEPTIONS_CUSTOM_HANDLER)
#include <cstdio>
#include <cstdlib>
#include <iostream>

namespace Catch {
[[noreturn]] void throw_exception(std::exception const& e) {
  std::cout.flush();
  std::cerr.flush();
  std::fprintf(stderr,
               "\ntinylarge tests (built without exceptions): stopping at the first failed "
               "REQUIRE, remaining test cases were not run.\nCatch2 reported: %s\n",
               e.what());
  std::fflush(stderr);
  std::_Exit(EXIT_FAILURE);
}
}  // namespace Catch
#endif
