# cmake -DINCLUDE_DIR=<repo>/include -P cmake/check_umbrella.cmake
#
# Fails when a public header under include/tinylarge/ is not reachable, through
# `#include "..."` lines, from one of the umbrella headers (tinylarge.hpp for the
# host profile, freestanding.hpp for the microcontroller profile). Pure text:
# preprocessor conditions are ignored, so a header included only under
# `#if defined(__AVX512F__)` still counts as reachable.
cmake_minimum_required(VERSION 3.25)
if(NOT INCLUDE_DIR)
  message(FATAL_ERROR "pass -DINCLUDE_DIR=<repo>/include")
endif()

set(umbrellas tinylarge/tinylarge.hpp tinylarge/freestanding.hpp)
set(reached "")
set(queue "")
foreach(u IN LISTS umbrellas)
  if(EXISTS "${INCLUDE_DIR}/${u}")
    list(APPEND queue "${u}")
  endif()
endforeach()

while(queue)
  list(POP_FRONT queue current)
  if(current IN_LIST reached)
    continue()
  endif()
  list(APPEND reached "${current}")
  file(STRINGS "${INCLUDE_DIR}/${current}" lines REGEX "^[ \t]*#[ \t]*include[ \t]*[\"<]")
  get_filename_component(dir "${current}" DIRECTORY)
  foreach(line IN LISTS lines)
    if(line MATCHES "#[ \t]*include[ \t]*\"([^\"]+)\"")
      set(candidate "${dir}/${CMAKE_MATCH_1}")
    elseif(line MATCHES "#[ \t]*include[ \t]*<(tinylarge/[^>]+)>")
      set(candidate "${CMAKE_MATCH_1}")
    else()
      continue()
    endif()
    # Normalise a/b/../c to a/c relative to INCLUDE_DIR.
    get_filename_component(abs "${INCLUDE_DIR}/${candidate}" ABSOLUTE)
    file(RELATIVE_PATH rel "${INCLUDE_DIR}" "${abs}")
    if(EXISTS "${abs}" AND NOT rel IN_LIST reached)
      list(APPEND queue "${rel}")
    endif()
  endforeach()
endwhile()

file(GLOB_RECURSE all RELATIVE "${INCLUDE_DIR}" "${INCLUDE_DIR}/tinylarge/*.hpp")
list(SORT all)
set(orphans "")
foreach(h IN LISTS all)
  if(NOT h IN_LIST reached)
    list(APPEND orphans "${h}")
  endif()
endforeach()
list(LENGTH all n_all)
if(orphans)
  list(JOIN orphans "\n  " text)
  message(FATAL_ERROR "headers not reachable from an umbrella header "
    "(add them to tinylarge.hpp, freestanding.hpp or a header those include):\n  ${text}")
endif()
message(STATUS "all ${n_all} public headers are reachable from an umbrella header")
