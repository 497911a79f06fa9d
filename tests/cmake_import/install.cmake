# cmake -DBUILD_DIR=<build> -DPREFIX=<dir> -P install.cmake
# Install a build tree into an empty prefix (stale files from an earlier
# install would hide a header that is no longer installed).
file(REMOVE_RECURSE "${PREFIX}")
execute_process(COMMAND "${CMAKE_COMMAND}" --install "${BUILD_DIR}" --prefix "${PREFIX}"
                RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "cmake --install failed (${rc})")
endif()
foreach(required
    include/tinylarge/tinylarge.hpp
    include/tinylarge/freestanding.hpp
    share/cmake/tinylarge/tinylargeConfig.cmake
    share/cmake/tinylarge/tinylargeConfigVersion.cmake
    share/cmake/tinylarge/tinylargeTargets.cmake)
  if(NOT EXISTS "${PREFIX}/${required}")
    message(FATAL_ERROR "not installed: ${PREFIX}/${required}")
  endif()
endforeach()
# Header-only: nothing compiled may be installed.
file(GLOB_RECURSE binaries "${PREFIX}/*.a" "${PREFIX}/*.so" "${PREFIX}/bin/*")
if(binaries)
  message(FATAL_ERROR "a header-only install contains binaries: ${binaries}")
endif()
