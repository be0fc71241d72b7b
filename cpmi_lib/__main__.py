from cpmi_lib.cli import main

main()
