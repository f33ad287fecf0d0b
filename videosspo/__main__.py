from videosspo.cli import main

main()
