# Finds every dependency. LibTorch comes from the pinned torch wheel in the project's venv
# (scripts/setup.sh); pass -DEVOQ_PYTHON=<venv>/bin/python or put the venv first on PATH.
# (EVOQ_ACCEPTANCE_ONLY builds use cmake/EvoqTorch.cmake alone: tests/gpu.)
find_package(Threads REQUIRED)
find_package(MPI REQUIRED COMPONENTS C)
# The C API only: keep Open MPI's deprecated C++ bindings out of every translation unit.
add_compile_definitions(OMPI_SKIP_MPICXX=1 MPICH_SKIP_MPICXX=1)

# Parallel HDF5 (openmpi flavour) with its C++ API; without these hints CMake silently mixes the
# serial C++ library with the parallel C one.
set(HDF5_PREFER_PARALLEL ON)
if(EXISTS /usr/bin/h5pcc.openmpi)
  set(HDF5_C_COMPILER_EXECUTABLE /usr/bin/h5pcc.openmpi CACHE FILEPATH "")
endif()
if(EXISTS /usr/bin/h5c++.openmpi)
  set(HDF5_CXX_COMPILER_EXECUTABLE /usr/bin/h5c++.openmpi CACHE FILEPATH "")
endif()
find_package(HDF5 REQUIRED COMPONENTS C CXX)
if(NOT HDF5_IS_PARALLEL)
  message(FATAL_ERROR "evoq needs the parallel (openmpi) HDF5: apt-get install libhdf5-openmpi-dev")
endif()
add_library(evoq_hdf5 INTERFACE)
target_include_directories(evoq_hdf5 SYSTEM INTERFACE ${HDF5_INCLUDE_DIRS})
target_link_libraries(evoq_hdf5 INTERFACE ${HDF5_CXX_LIBRARIES} ${HDF5_C_LIBRARIES} MPI::MPI_C)
target_compile_definitions(evoq_hdf5 INTERFACE ${HDF5_DEFINITIONS})

find_package(OpenCV REQUIRED COMPONENTS core imgproc imgcodecs quality)
find_package(Boost REQUIRED COMPONENTS program_options)
find_package(nlohmann_json REQUIRED)
find_package(PkgConfig REQUIRED)
pkg_check_modules(PCRE2 REQUIRED IMPORTED_TARGET libpcre2-8)
# ICU's common library: NFC normalisation in the tokenizer.
pkg_check_modules(ICU REQUIRED IMPORTED_TARGET icu-uc)

# LibTorch (from the venv's torch wheel) and NCCL.
include(${CMAKE_CURRENT_LIST_DIR}/EvoqTorch.cmake)
