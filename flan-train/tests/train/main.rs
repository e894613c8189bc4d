//! Integration tests of flan-train, one binary split by topic.

mod adafactor_parity;
mod adamw_parity;
mod common;
mod data_parallel;
mod overfit;
mod resume;
mod t5;
mod tensorboard;
mod truncation;
