from productgen.cli import app

app()
