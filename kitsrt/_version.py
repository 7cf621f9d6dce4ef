"""The kitsrt version, in a module of its own so that any layer can read it without importing the
package's top level (which reaches the runtime)."""

__version__ = "0.1.0"
