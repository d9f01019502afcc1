"""The one source of truth every maturity level calls: data, validation, features, model, metrics."""
