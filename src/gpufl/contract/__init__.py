"""What every part of GPU Flight shares: the record contract (``events``), derived by client, agent and backend."""
