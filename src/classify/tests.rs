//! Classifier tests over real state backends.
