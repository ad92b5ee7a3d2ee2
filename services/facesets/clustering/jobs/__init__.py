"""The clustering jobs: each reads a store and writes an output folder or report."""
