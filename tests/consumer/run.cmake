message(STATUS "consumer placeholder")
