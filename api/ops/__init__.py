"""Operations endpoints and commands: /healthz, backup, restore, export."""
