# nlohmann/json (header-only) for the GPU acceptance build: the system's package (nlohmann-json3-dev),
# else the include folder of the `nlohmann-json` PyPI package in torch's Python, else -DEVOQ_JSON_INCLUDE or
# the environment variable EVOQ_JSON_INCLUDE (a folder holding nlohmann/json.hpp, carried to an offline box).
# Defines evoq_json.
find_package(nlohmann_json QUIET)
add_library(evoq_json INTERFACE)
if(nlohmann_json_FOUND)
  target_link_libraries(evoq_json INTERFACE nlohmann_json::nlohmann_json)
  message(STATUS "nlohmann/json: system package")
else()
  execute_process(COMMAND ${EVOQ_PYTHON} -c
                  "import nlohmann_json, os; print(os.path.join(os.path.dirname(nlohmann_json.__file__), 'include'), end='')"
                  OUTPUT_VARIABLE _pip_json_include ERROR_QUIET)
  find_path(EVOQ_JSON_INCLUDE nlohmann/json.hpp HINTS ${_pip_json_include} $ENV{EVOQ_JSON_INCLUDE})
  if(NOT EVOQ_JSON_INCLUDE)
    message(FATAL_ERROR "nlohmann/json.hpp not found: install nlohmann-json3-dev, or `pip install nlohmann-json` "
                        "(offline: pip install --no-index nlohmann_json-*.whl), or pass -DEVOQ_JSON_INCLUDE=DIR "
                        "(or set it in the environment)")
  endif()
  target_include_directories(evoq_json SYSTEM INTERFACE ${EVOQ_JSON_INCLUDE})
  message(STATUS "nlohmann/json: ${EVOQ_JSON_INCLUDE}")
endif()
