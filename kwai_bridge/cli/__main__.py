from kwai_bridge.cli import main

main()
