"""What compiles or checks without training: ahead-of-time compilation for accelerators that are
not here (`aot`, `aot_inference`, `targets`), what compiled programs say about themselves
(`hlo_stats`), model FLOP counts (`flops`), the prepared GPU check (`device_check`), the
conversion check (`parity`) and the one-minute smoke run (`smoke`)."""
