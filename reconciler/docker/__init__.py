"""Docker access: `adapter` (the only python_on_whales importer), the facts it returns,
its error classification and its retry policy."""
