"""The one source of truth every level calls: data, validation, features, model, metrics."""
