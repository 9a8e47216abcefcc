"""The contract between components and for outside producers: topic catalogue and record formats."""
