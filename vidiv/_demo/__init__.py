"""The `vidiv demo` main job: eight schools with every method and every installed backend."""
