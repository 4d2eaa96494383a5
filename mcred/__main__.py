from mcred.cli.main import run

run()
