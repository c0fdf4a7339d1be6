"""An example lume plug-in (docs/plugins.md): a method and an evaluation section from outside lume."""
