# Finds every dependency. LibTorch comes from the pinned torch wheel in the project's venv
# (scripts/setup.sh); pass -DEVOQ_PYTHON=<venv>/bin/python or put the venv first on PATH.
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

# ---- LibTorch from the torch wheel ---------------------------------------------------------------
if(NOT EVOQ_PYTHON)
  find_program(EVOQ_PYTHON NAMES python3 python REQUIRED)
endif()
execute_process(COMMAND ${EVOQ_PYTHON} -c "import torch,sys; sys.stdout.write(torch.utils.cmake_prefix_path + ';' + torch.__version__ + ';' + str(torch.version.cuda))"
  OUTPUT_VARIABLE _torch_info RESULT_VARIABLE _torch_rc)
if(NOT _torch_rc EQUAL 0)
  message(FATAL_ERROR "No torch in ${EVOQ_PYTHON}. Run scripts/setup.sh and pass -DEVOQ_PYTHON=<venv>/bin/python")
endif()
list(GET _torch_info 0 _torch_prefix)
list(GET _torch_info 1 EVOQ_TORCH_VERSION)
list(GET _torch_info 2 EVOQ_TORCH_CUDA)
list(APPEND CMAKE_PREFIX_PATH ${_torch_prefix})
message(STATUS "torch ${EVOQ_TORCH_VERSION} (CUDA ${EVOQ_TORCH_CUDA}) from ${_torch_prefix}")
# No GPU here: name the target architectures so torch's CMake does not try to detect one.
if(NOT DEFINED ENV{TORCH_CUDA_ARCH_LIST} AND NOT TORCH_CUDA_ARCH_LIST)
  set(TORCH_CUDA_ARCH_LIST "8.0;9.0" CACHE STRING "CUDA architectures (A100, H100)")
endif()
set(CMAKE_CUDA_STANDARD 17)
set(CMAKE_CUDA_EXTENSIONS OFF)
find_package(Torch REQUIRED)

# The wheel loads its CUDA libraries (cudart, NCCL, cuBLAS...) from site-packages/nvidia/*/lib. Search
# those first at link and run time so one process never mixes them with the toolkit's copies.
get_filename_component(_site_packages "${_torch_prefix}/../../.." ABSOLUTE)
file(GLOB EVOQ_WHEEL_CUDA_LIBDIRS LIST_DIRECTORIES true "${_site_packages}/nvidia/*/lib")
set(_wheel_rpath "")
foreach(dir ${EVOQ_WHEEL_CUDA_LIBDIRS} "${_site_packages}/torch/lib")
  list(APPEND _wheel_rpath "-Wl,-rpath,${dir}" "-Wl,-rpath-link,${dir}")
endforeach()
add_library(evoq_torch INTERFACE)
target_link_options(evoq_torch INTERFACE ${_wheel_rpath})
target_link_libraries(evoq_torch INTERFACE ${TORCH_LIBRARIES})
target_include_directories(evoq_torch SYSTEM INTERFACE ${TORCH_INCLUDE_DIRS})
# One precompiled header for every translation unit that includes torch.
add_library(evoq_torch_pch STATIC ${PROJECT_SOURCE_DIR}/cmake/empty.cpp)
target_link_libraries(evoq_torch_pch PUBLIC evoq_torch)
target_precompile_headers(evoq_torch_pch PUBLIC <torch/torch.h>)

# ---- NCCL (compiled when torch has CUDA and the toolkit is present) -------------------------------
set(EVOQ_HAVE_NCCL OFF)
if(NOT EVOQ_WITH_NCCL STREQUAL "OFF")
  find_package(CUDAToolkit QUIET)
  # Use the NCCL that torch itself loads (the nvidia-nccl wheel), headers and library, so one process
  # has one NCCL; the toolkit's copy is only a fallback for a torch without the wheel.
  find_path(NCCL_INCLUDE_DIR nccl.h HINTS "${_site_packages}/nvidia/nccl/include" ${CUDAToolkit_INCLUDE_DIRS} NO_CACHE)
  find_library(NCCL_LIBRARY NAMES libnccl.so.2 nccl NAMES_PER_DIR
               HINTS "${_site_packages}/nvidia/nccl/lib" ${CUDAToolkit_LIBRARY_DIR} NO_CACHE)
  if(CUDAToolkit_FOUND AND NCCL_INCLUDE_DIR AND NCCL_LIBRARY AND NOT EVOQ_TORCH_CUDA STREQUAL "None")
    set(EVOQ_HAVE_NCCL ON)
    add_library(evoq_nccl INTERFACE)
    target_include_directories(evoq_nccl SYSTEM INTERFACE ${NCCL_INCLUDE_DIR})
    target_link_libraries(evoq_nccl INTERFACE ${NCCL_LIBRARY} CUDA::cudart)
    message(STATUS "NCCL backend: ON (${NCCL_LIBRARY})")
  elseif(EVOQ_WITH_NCCL STREQUAL "ON")
    message(FATAL_ERROR "EVOQ_WITH_NCCL=ON but CUDA toolkit / NCCL / CUDA torch not found")
  else()
    message(STATUS "NCCL backend: OFF")
  endif()
endif()
