# evoq_layer(NAME DEPS ...): one static library per layer from src/NAME/*.cpp, public headers in include/.
# Layers that use LibTorch pass TORCH; they share one precompiled header of the torch headers.
function(evoq_layer name)
  cmake_parse_arguments(L "TORCH" "" "DEPS" ${ARGN})
  file(GLOB srcs CONFIGURE_DEPENDS ${PROJECT_SOURCE_DIR}/src/${name}/*.cpp)
  if(NOT srcs)
    set(srcs ${PROJECT_SOURCE_DIR}/cmake/empty.cpp)
  endif()
  add_library(evoq_${name} STATIC ${srcs})
  target_include_directories(evoq_${name} PUBLIC ${PROJECT_SOURCE_DIR}/include)
  target_link_libraries(evoq_${name} PUBLIC ${L_DEPS})
  target_compile_options(evoq_${name} PRIVATE -Wall -Wextra -Wno-unused-parameter)
  if(L_TORCH)
    target_link_libraries(evoq_${name} PUBLIC evoq_torch)
    target_precompile_headers(evoq_${name} REUSE_FROM evoq_torch_pch)
  endif()
endfunction()

# Executables that include torch headers reuse the same precompiled header.
function(evoq_use_torch_pch target)
  target_precompile_headers(${target} REUSE_FROM evoq_torch_pch)
endfunction()
