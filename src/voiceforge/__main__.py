from voiceforge.cli import main

main()
