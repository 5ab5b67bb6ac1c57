from sagan_restore.cli import run

run()
