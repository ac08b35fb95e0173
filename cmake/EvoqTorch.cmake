# LibTorch from a torch wheel, and NCCL: the only dependencies of the LibTorch layers' GPU path, used
# by the full build (EvoqDependencies.cmake) and alone by the GPU acceptance build (EVOQ_ACCEPTANCE_ONLY,
# tests/gpu). Defines evoq_torch, evoq_torch_pch, EVOQ_TORCH_VERSION / EVOQ_TORCH_CUDA, and evoq_nccl
# with EVOQ_HAVE_NCCL when NCCL is found.
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
