# The install_consumer test: builds and installs hopper (library only) from SOURCE_DIR into
# WORK_DIR/prefix, then configures, builds and runs the tiny project next to this script,
# which finds it with find_package(hopper CONFIG REQUIRED) and links hopper::hopper.
# Every step starts from an empty WORK_DIR, as a fresh clone would. Any failure is fatal.
#
#   cmake -DSOURCE_DIR=<hopper source> -DWORK_DIR=<scratch> [-DGENERATOR=Ninja]
#         [-DCXX_COMPILER=<c++>] -P tests/consumer/run.cmake
cmake_minimum_required(VERSION 3.25)

foreach(var SOURCE_DIR WORK_DIR)
  if(NOT DEFINED ${var} OR "${${var}}" STREQUAL "")
    message(FATAL_ERROR "install_consumer: pass -D${var}=...")
  endif()
endforeach()
if(NOT GENERATOR)
  set(GENERATOR Ninja)
endif()
set(common_args -G ${GENERATOR} -DCMAKE_BUILD_TYPE=Release -DCMAKE_FIND_PACKAGE_NO_PACKAGE_REGISTRY=ON)
if(CXX_COMPILER)
  list(APPEND common_args -DCMAKE_CXX_COMPILER=${CXX_COMPILER})
endif()

set(prefix ${WORK_DIR}/prefix)
set(hopper_build ${WORK_DIR}/hopper-build)
set(consumer_build ${WORK_DIR}/consumer-build)
file(REMOVE_RECURSE ${WORK_DIR})
file(MAKE_DIRECTORY ${WORK_DIR})

# Runs one step; on failure prints its output and stops.
function(step name)
  execute_process(COMMAND ${ARGN}
    WORKING_DIRECTORY ${WORK_DIR}
    RESULT_VARIABLE rc
    OUTPUT_VARIABLE out
    ERROR_VARIABLE out)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "install_consumer: ${name} failed (exit ${rc}):\n${out}")
  endif()
  message(STATUS "install_consumer: ${name}: ok")
  set(step_output "${out}" PARENT_SCOPE)
endfunction()

step("configure hopper"
  ${CMAKE_COMMAND} -S ${SOURCE_DIR} -B ${hopper_build} ${common_args}
  -DCMAKE_INSTALL_PREFIX=${prefix}
  -DHOPPER_BUILD_TESTS=OFF -DHOPPER_BUILD_BENCH=OFF -DHOPPER_BUILD_PROGRAMS=OFF -DHOPPER_BUILD_FUZZ=OFF)
step("build hopper" ${CMAKE_COMMAND} --build ${hopper_build} -j 2)
step("install hopper" ${CMAKE_COMMAND} --install ${hopper_build})

if(NOT EXISTS ${prefix}/include/hopper/hopper.hpp)
  message(FATAL_ERROR "install_consumer: ${prefix}/include/hopper/hopper.hpp was not installed")
endif()

step("configure consumer"
  ${CMAKE_COMMAND} -S ${CMAKE_CURRENT_LIST_DIR} -B ${consumer_build} ${common_args}
  -DCMAKE_PREFIX_PATH=${prefix})
# The package found must be the one just installed, not one from elsewhere on the system.
file(STRINGS ${consumer_build}/CMakeCache.txt found_dir REGEX "^hopper_DIR:")
string(FIND "${found_dir}" "${prefix}/" at)
if(NOT at GREATER -1)
  message(FATAL_ERROR "install_consumer: found hopper outside ${prefix}: ${found_dir}")
endif()
step("build consumer" ${CMAKE_COMMAND} --build ${consumer_build} -j 2)
step("run consumer" ${consumer_build}/app ${WORK_DIR}/queue)
message(STATUS "install_consumer: ${step_output}")
