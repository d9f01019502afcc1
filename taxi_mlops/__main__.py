from taxi_mlops.cli import main

main()
