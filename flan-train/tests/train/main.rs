//! Integration tests of flan-train, one binary split by topic.

mod activation_checkpointing;
mod adafactor_parity;
mod adamw_parity;
mod checksum;
mod common;
mod data_parallel;
mod freeze;
mod lora;
mod overfit;
mod packing;
mod preempt;
mod resume;
mod t5;
mod tensorboard;
mod truncation;
