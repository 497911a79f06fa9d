# vcpkg overlay port of tinylarge (header-only). Used from a checkout:
#   vcpkg install tinylarge --overlay-ports=<checkout>/ports
# It builds from the checkout that contains it (two levels up), so the port and the
# sources cannot disagree. Once the project publishes release archives, replace
# SOURCE_PATH by vcpkg_from_github(OUT_SOURCE_PATH SOURCE_PATH REPO ... REF v${VERSION} SHA512 ...).
get_filename_component(SOURCE_PATH "${CMAKE_CURRENT_LIST_DIR}/../.." ABSOLUTE)
if(NOT EXISTS "${SOURCE_PATH}/include/tinylarge/tinylarge.hpp")
  message(FATAL_ERROR "tinylarge: the overlay port must stay at <checkout>/ports/tinylarge (no sources at ${SOURCE_PATH})")
endif()

# Header-only: one configuration is enough.
set(VCPKG_BUILD_TYPE release)

vcpkg_check_features(OUT_FEATURE_OPTIONS FEATURE_OPTIONS
  FEATURES
    xsimd TINYLARGE_USE_XSIMD
)

vcpkg_cmake_configure(
  SOURCE_PATH "${SOURCE_PATH}"
  OPTIONS
    ${FEATURE_OPTIONS}
    -DTINYLARGE_BUILD_TESTS=OFF
    -DTINYLARGE_BUILD_EXAMPLES=OFF
    -DTINYLARGE_BUILD_BENCHMARKS=OFF
    -DTINYLARGE_INSTALL=ON
)
vcpkg_cmake_install()

# tinylarge installs its CMake package to share/cmake/tinylarge; vcpkg wants share/tinylarge.
vcpkg_cmake_config_fixup(PACKAGE_NAME tinylarge CONFIG_PATH share/cmake/tinylarge)
# tinylarge.pc lives in share/pkgconfig (arch-independent); make its prefix vcpkg's.
vcpkg_fixup_pkgconfig()

file(REMOVE_RECURSE "${CURRENT_PACKAGES_DIR}/debug" "${CURRENT_PACKAGES_DIR}/lib")

vcpkg_install_copyright(FILE_LIST "${SOURCE_PATH}/LICENSE")
file(INSTALL "${CMAKE_CURRENT_LIST_DIR}/usage" DESTINATION "${CURRENT_PACKAGES_DIR}/share/${PORT}")
