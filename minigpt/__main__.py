from minigpt.cli import main

# Guarded: worker processes started by spawning import this module again, and must not run the CLI.
if __name__ == "__main__":
    main()
