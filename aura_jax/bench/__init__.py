"""What times things on this machine: the training step (`train`) and its parts (`parts`), single
ops (`ops`), end-to-end inference (`infer`), generation (`generation`) and streaming (`stream`).
`machine` holds what they share (load, cores, timing loops)."""
