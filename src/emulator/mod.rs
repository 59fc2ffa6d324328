//! Vipps emulator (in progress)
