"""Work in processes: spawned workers that know their job, the one loop that survives their deaths
(supervise), ordered pools, read-ahead threads, the test fault hook."""
