"""Gates: what may enter (importing) and what may leave (exporting) the lab."""
