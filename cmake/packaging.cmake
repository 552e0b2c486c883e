# Debian packages built with CPack (`cpack -G DEB` in a build configured with
# -DCMAKE_INSTALL_PREFIX=/usr; scripts/ci-packages builds, checks and tries them):
#
#   libhopper-dev  the library's install rules, which name no component (CMake calls that
#                  component "Unspecified"): headers, libhopper.a, the CMake package; and
#                  here, the pkg-config file hopper.pc
#   hopperd        component "hopperd" (the programs section): hopperd, the hopper tool,
#                  the systemd unit, the sysusers.d entry that creates the user, man pages,
#                  the example config and docs/operations.md
#
# Each package gets the copyright file, changelog and lintian overrides Debian expects.
set(HOPPER_DEB_MAINTAINER "hopper developers <hopper@example.org>")
set(HOPPER_DEB_VERSION "${PROJECT_VERSION}-1")
set(deb_dir ${PROJECT_BINARY_DIR}/deb)

# pkg-config: the library is static, so its dependencies are in Libs.
configure_file(${PROJECT_SOURCE_DIR}/cmake/hopper.pc.in ${PROJECT_BINARY_DIR}/hopper.pc @ONLY)
install(FILES ${PROJECT_BINARY_DIR}/hopper.pc DESTINATION ${CMAKE_INSTALL_LIBDIR}/pkgconfig COMPONENT Unspecified)

# A stripped install (cpack: CPACK_STRIP_FILES; cmake --install --strip) strips executables
# but not static archives, and leaves the compiler's .comment sections; dh_strip does
# both (its flags, below), so the packages look like Debian's own to lintian.
function(hopper_deb_strip component file)
  install(CODE "if(CMAKE_INSTALL_DO_STRIP)
  execute_process(COMMAND ${CMAKE_STRIP} --strip-debug --remove-section=.comment --remove-section=.note
                          --enable-deterministic-archives \"\$ENV{DESTDIR}\${CMAKE_INSTALL_PREFIX}/${file}\")
endif()" COMPONENT ${component})
endfunction()
hopper_deb_strip(Unspecified ${CMAKE_INSTALL_LIBDIR}/$<TARGET_FILE_NAME:hopper>)
if(HOPPER_BUILD_PROGRAMS)
  hopper_deb_strip(hopperd ${CMAKE_INSTALL_BINDIR}/$<TARGET_FILE_NAME:hopperd>)
  hopper_deb_strip(hopperd ${CMAKE_INSTALL_BINDIR}/$<TARGET_FILE_NAME:hopper-tool>)
endif()

# Compressed the way Debian wants them (gzip -9n: no name, no time stamp).
set(deb_gz)
function(hopper_deb_gz out in)
  add_custom_command(OUTPUT ${out} COMMAND gzip -9n -c ${in} > ${out} DEPENDS ${in} VERBATIM)
  set(deb_gz ${deb_gz} ${out} PARENT_SCOPE)
endfunction()

foreach(pkg libhopper-dev hopperd)
  if(pkg STREQUAL "hopperd")
    set(component hopperd)
    if(NOT HOPPER_BUILD_PROGRAMS)
      continue()
    endif()
  else()
    set(component Unspecified)
  endif()
  set(PACKAGE ${pkg})
  set(VERSION ${HOPPER_DEB_VERSION})
  set(MAINTAINER ${HOPPER_DEB_MAINTAINER})
  configure_file(${PROJECT_SOURCE_DIR}/hopper/packaging/changelog.in ${deb_dir}/${pkg}/changelog.Debian @ONLY)
  hopper_deb_gz(${deb_dir}/${pkg}/changelog.Debian.gz ${deb_dir}/${pkg}/changelog.Debian)
  install(FILES ${PROJECT_SOURCE_DIR}/hopper/packaging/copyright ${deb_dir}/${pkg}/changelog.Debian.gz
          DESTINATION ${CMAKE_INSTALL_DATAROOTDIR}/doc/${pkg} COMPONENT ${component})
  if(EXISTS ${PROJECT_SOURCE_DIR}/hopper/packaging/${pkg}.lintian-overrides)
    install(FILES ${PROJECT_SOURCE_DIR}/hopper/packaging/${pkg}.lintian-overrides
            DESTINATION ${CMAKE_INSTALL_DATAROOTDIR}/lintian/overrides RENAME ${pkg} COMPONENT ${component})
  endif()
endforeach()

if(HOPPER_BUILD_PROGRAMS)
  foreach(page hopperd.8 hopper.1)
    string(REGEX REPLACE ".*\\." "" section ${page})
    hopper_deb_gz(${deb_dir}/${page}.gz ${PROJECT_SOURCE_DIR}/hopper/packaging/${page})
    install(FILES ${deb_dir}/${page}.gz DESTINATION ${CMAKE_INSTALL_MANDIR}/man${section} COMPONENT hopperd)
  endforeach()
  hopper_deb_gz(${deb_dir}/operations.md.gz ${PROJECT_SOURCE_DIR}/docs/operations.md)
  install(FILES ${deb_dir}/operations.md.gz DESTINATION ${CMAKE_INSTALL_DATAROOTDIR}/doc/hopperd COMPONENT hopperd)
  install(FILES ${PROJECT_SOURCE_DIR}/hopper/hopperd.example.toml
          DESTINATION ${CMAKE_INSTALL_DATAROOTDIR}/doc/hopperd/examples COMPONENT hopperd)
  # The unit with this build's paths; Debian 12 keeps system units in /lib/systemd/system.
  set(HOPPERD_BINDIR ${CMAKE_INSTALL_FULL_BINDIR})
  configure_file(${PROJECT_SOURCE_DIR}/hopper/hopperd.service ${deb_dir}/hopperd.service @ONLY)
  if(CMAKE_INSTALL_PREFIX STREQUAL "/usr")
    set(unit_dir /lib/systemd/system)
  else()
    set(unit_dir ${CMAKE_INSTALL_LIBDIR}/systemd/system)
  endif()
  install(FILES ${deb_dir}/hopperd.service DESTINATION ${unit_dir} COMPONENT hopperd)
  install(FILES ${PROJECT_SOURCE_DIR}/hopper/packaging/hopperd.sysusers DESTINATION lib/sysusers.d
          RENAME hopperd.conf COMPONENT hopperd)
endif()
add_custom_target(hopper_deb_files ALL DEPENDS ${deb_gz})

set(CPACK_GENERATOR DEB)
set(CPACK_PACKAGE_NAME hopper)
set(CPACK_PACKAGE_VENDOR "the hopper developers")
set(CPACK_PACKAGE_CONTACT ${HOPPER_DEB_MAINTAINER})
set(CPACK_PACKAGE_VERSION ${PROJECT_VERSION})
set(CPACK_DEB_COMPONENT_INSTALL ON)
set(CPACK_COMPONENTS_ALL Unspecified)
if(HOPPER_BUILD_PROGRAMS)
  list(APPEND CPACK_COMPONENTS_ALL hopperd)
endif()
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)
set(CPACK_DEBIAN_PACKAGE_RELEASE 1)
set(CPACK_DEBIAN_PACKAGE_MAINTAINER ${HOPPER_DEB_MAINTAINER})
set(CPACK_DEBIAN_PACKAGE_PRIORITY optional)
set(CPACK_DEBIAN_COMPRESSION_TYPE xz)
set(CPACK_STRIP_FILES ON)
set(CPACK_PACKAGE_HOMEPAGE_URL "")

set(CPACK_DEBIAN_UNSPECIFIED_PACKAGE_NAME libhopper-dev)
set(CPACK_DEBIAN_UNSPECIFIED_PACKAGE_SECTION libdevel)
# The headers include cereal's; libhopper.a needs zstd and xxhash at link time.
set(CPACK_DEBIAN_UNSPECIFIED_PACKAGE_DEPENDS "libcereal-dev, libzstd-dev, libxxhash-dev")
set(CPACK_DEBIAN_UNSPECIFIED_DESCRIPTION
    "MPSC queue bounded in bytes that spills to disk (C++20)\n\
hopper is a multi-producer, single-consumer queue whose memory is bounded in\n\
bytes. Items beyond the memory budget are compressed and appended to rotating\n\
segment files instead of being dropped, and read back in order.\n\
.\n\
This package contains the headers, the static library, the CMake package\n\
(find_package(hopper)) and the pkg-config file.")

set(CPACK_DEBIAN_HOPPERD_PACKAGE_NAME hopperd)
set(CPACK_DEBIAN_HOPPERD_PACKAGE_SECTION net)
set(CPACK_DEBIAN_HOPPERD_PACKAGE_SHLIBDEPS ON)
set(CPACK_DEBIAN_HOPPERD_PACKAGE_RECOMMENDS systemd)
set(CPACK_DEBIAN_HOPPERD_PACKAGE_CONTROL_EXTRA ${PROJECT_SOURCE_DIR}/hopper/packaging/postinst)
set(CPACK_DEBIAN_HOPPERD_PACKAGE_CONTROL_STRICT_PERMISSION ON)
set(CPACK_DEBIAN_HOPPERD_DESCRIPTION
    "store-and-forward relay for line telemetry\n\
hopperd relays newline-delimited telemetry (graphite plaintext, statsd,\n\
influx line protocol) from TCP, TLS and UDP listeners to TCP (optionally TLS)\n\
or Kafka downstreams. Each downstream has its own queue, bounded in memory and\n\
spilling to compressed files on disk while the downstream is slow or away.\n\
.\n\
This package contains hopperd, the hopper tool that inspects its queues, a\n\
systemd unit and an example configuration.")
include(CPack)
