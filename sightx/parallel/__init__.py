"""Work in processes: spawned workers that know their job, ordered pools, read-ahead threads, test faults."""
