"""Network backends behind one interface (:mod:`runtime.backends.base`); each imports its library lazily."""
